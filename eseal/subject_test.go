package eseal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/orgno"
)

// TestNameSurvivesEncoding encodes the subject into a real certificate
// request and reads the organisation number back, in both styles.
func TestNameSurvivesEncoding(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		s := Subject{OrgNumber: "991825827", Organization: "Digitaliseringsdirektoratet", LegacySerialNumber: legacy}
		csr := encodeInRequest(t, s)
		got, err := orgno.FromName(csr.Subject)
		if err != nil || got != "991825827" {
			t.Fatalf("legacy=%v: FromName = %q, %v", legacy, got, err)
		}
		if csr.Subject.CommonName != "Digitaliseringsdirektoratet" || csr.Subject.Country[0] != "NO" {
			t.Fatalf("legacy=%v: subject = %v", legacy, csr.Subject)
		}
		hasOrgID := false
		for _, atv := range csr.Subject.Names {
			if atv.Type.Equal(orgno.OIDOrganizationIdentifier) && atv.Value == "NTRNO-991825827" {
				hasOrgID = true
			}
		}
		if hasOrgID == legacy {
			t.Fatalf("legacy=%v: organizationIdentifier present = %v in %v", legacy, hasOrgID, csr.Subject.Names)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		subject Subject
		want    string
	}{
		{"valid", Subject{OrgNumber: "991825827", Organization: "Digdir"}, ""},
		{"bad check digit", Subject{OrgNumber: "991825828", Organization: "Digdir"}, "check digit"},
		{"no organisation", Subject{OrgNumber: "991825827"}, "no organisation name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.subject.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	csr := encodeInRequest(t, Subject{OrgNumber: "991825827", Organization: "Digdir", CommonName: "Digdir eSeal"})
	want := "CN=Digdir eSeal,O=Digdir,C=NO,organizationIdentifier=NTRNO-991825827"
	if got := Describe(csr.Subject); got != want {
		t.Fatalf("Describe() = %q, want %q", got, want)
	}
}

// encodeInRequest puts the subject through a real DER encoding and back.
func encodeInRequest(t *testing.T, s Subject) *x509.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: s.Name()}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
