package identity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"
)

func TestFromCertificate(t *testing.T) {
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
		err  string
	}{
		{"SPIFFE ID first", &x509.Certificate{URIs: []*url.URL{uri("spiffe://example.org/ns/a/sa/b")}, DNSNames: []string{"a.internal"}, Subject: pkix.Name{CommonName: "a"}}, "spiffe://example.org/ns/a/sa/b", ""},
		{"DNS SAN next", &x509.Certificate{DNSNames: []string{"Billing.Internal", "other"}, Subject: pkix.Name{CommonName: "a"}}, "dns:billing.internal", ""},
		{"CN last", &x509.Certificate{Subject: pkix.Name{CommonName: "billing-service"}}, "cn:billing-service", ""},
		// A URI SAN must not pose as a Unix peer or another kind of name.
		{"uid posing as root", &x509.Certificate{URIs: []*url.URL{uri("uid:0")}}, "", "cannot identify a caller"},
		{"gid posing", &x509.Certificate{URIs: []*url.URL{uri("gid:0")}}, "", "cannot identify a caller"},
		{"dns posing", &x509.Certificate{URIs: []*url.URL{uri("dns:billing.internal")}}, "", "cannot identify a caller"},
		{"nothing to go by", &x509.Certificate{}, "", "no URI SAN, DNS SAN or common name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromCertificate(tt.cert)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("FromCertificate = %q, %v; want an error saying %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FromCertificate = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
