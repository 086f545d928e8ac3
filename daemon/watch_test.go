package daemon

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"
)

func TestCheckCertificate(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	cert := func(from, to time.Time) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: "Demo AS"}, NotBefore: from, NotAfter: to}
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"valid", cert(now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0)), ""},
		{"expired", cert(now.AddDate(-2, 0, 0), now.AddDate(0, 0, -1)), `environment prod: the certificate "Demo AS" expired on 2026-11-23; import a renewed one`},
		{"not yet valid", cert(now.Add(time.Hour), now.AddDate(1, 0, 0)), "is not valid before 2026-11-24T13:00:00Z (is the clock right?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCertificate(tt.cert, "prod", now)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("checkCertificate = %v, want %q", err, tt.want)
			}
		})
	}
}
