package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"github.com/portvakt/portvakt/eseal"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/orgno"
)

// Organisation numbers with check digits recomputed by hand (weights
// 3 2 7 6 5 4 3 2): 991825827 sum 158 r 4 check 7; 974760673 sum 173 r 8
// check 3.
const (
	digdir orgno.Number = "991825827"
	brreg  orgno.Number = "974760673"
)

// orgIdentifier returns the organizationIdentifier value in a parsed
// subject, or "" if there is none.
func orgIdentifier(name pkix.Name) string {
	for _, a := range name.Names {
		if a.Type.Equal(orgno.OIDOrganizationIdentifier) {
			v, _ := a.Value.(string)
			return v
		}
	}
	return ""
}

func TestIssueESeal(t *testing.T) {
	ca := newTestCA(t)
	key := testRSAKey(t, rsa2048)

	tests := []struct {
		name         string
		subject      eseal.Subject
		validity     time.Duration
		wantCN       string
		wantOrgID    string
		wantSerial   string
		wantValidity time.Duration
	}{
		{
			name:         "organizationIdentifier",
			subject:      eseal.Subject{OrgNumber: digdir, Organization: "DIGITALISERINGSDIREKTORATET", CommonName: "Digdir Portvakt"},
			validity:     30 * 24 * time.Hour,
			wantCN:       "Digdir Portvakt",
			wantOrgID:    "NTRNO-991825827",
			wantValidity: 30 * 24 * time.Hour,
		},
		{
			name:         "legacy serialNumber",
			subject:      eseal.Subject{OrgNumber: brreg, Organization: "BRØNNØYSUNDREGISTRENE", CommonName: "Brreg", LegacySerialNumber: true},
			validity:     time.Hour,
			wantCN:       "Brreg",
			wantSerial:   "974760673",
			wantValidity: time.Hour,
		},
		{
			name:         "default CN and validity",
			subject:      eseal.Subject{OrgNumber: digdir, Organization: "DIGITALISERINGSDIREKTORATET"},
			wantCN:       "DIGITALISERINGSDIREKTORATET",
			wantOrgID:    "NTRNO-991825827",
			wantValidity: defaultESealValidity,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			cert, err := ca.IssueESeal(&key.PublicKey, tt.subject, tt.validity)
			if err != nil {
				t.Fatalf("IssueESeal() error = %v", err)
			}
			verifyESeal(t, ca, cert)

			s := cert.Subject
			if s.CommonName != tt.wantCN {
				t.Errorf("CN = %q, want %q", s.CommonName, tt.wantCN)
			}
			if len(s.Organization) != 1 || s.Organization[0] != tt.subject.Organization {
				t.Errorf("O = %q, want [%s]", s.Organization, tt.subject.Organization)
			}
			if len(s.Country) != 1 || s.Country[0] != "NO" {
				t.Errorf("C = %q, want [NO]", s.Country)
			}
			if got := orgIdentifier(s); got != tt.wantOrgID {
				t.Errorf("organizationIdentifier = %q, want %q", got, tt.wantOrgID)
			}
			if s.SerialNumber != tt.wantSerial {
				t.Errorf("serialNumber = %q, want %q", s.SerialNumber, tt.wantSerial)
			}
			n, err := orgno.FromCertificate(cert)
			if err != nil || n != tt.subject.OrgNumber {
				t.Errorf("orgno.FromCertificate() = %q, %v; want %q", n, err, tt.subject.OrgNumber)
			}

			if cert.IsCA {
				t.Error("eSeal is a CA certificate")
			}
			if want := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment; cert.KeyUsage != want {
				t.Errorf("KeyUsage = %v, want %v", cert.KeyUsage, want)
			}
			// Certificate times have one-second resolution.
			if d := cert.NotBefore.Sub(before.Add(-clockSkew)); d < -time.Second || d > time.Second {
				t.Errorf("NotBefore = %v, want about %v", cert.NotBefore, before.Add(-clockSkew))
			}
			if d := cert.NotAfter.Sub(before); d < tt.wantValidity-time.Minute || d > tt.wantValidity+time.Minute {
				t.Errorf("NotAfter is %v after issuance, want about %v", d, tt.wantValidity)
			}
			if len(cert.SubjectKeyId) == 0 || string(cert.AuthorityKeyId) != string(ca.Issuing.SubjectKeyId) {
				t.Errorf("SubjectKeyId %x / AuthorityKeyId %x not set as expected", cert.SubjectKeyId, cert.AuthorityKeyId)
			}
		})
	}
}

func TestIssueESealRejects(t *testing.T) {
	ca := newTestCA(t)
	rsaKey := testRSAKey(t, rsa2048)
	smallKey := testRSAKey(t, rsa1024)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := eseal.Subject{OrgNumber: digdir, Organization: "DIGITALISERINGSDIREKTORATET"}

	tests := []struct {
		name     string
		pub      any
		subject  eseal.Subject
		validity time.Duration
		wantErr  string
	}{
		{name: "ECDSA key", pub: &ecKey.PublicKey, subject: good, wantErr: "*ecdsa.PublicKey; the HSM key must be RSA with at least 2048 bits"},
		{name: "RSA-1024", pub: &smallKey.PublicKey, subject: good, wantErr: "has 1024 bits; the HSM key must be RSA with at least 2048 bits"},
		{name: "nil key", pub: nil, subject: good, wantErr: "must be RSA"},
		{name: "unvalidated org number", pub: &rsaKey.PublicKey, subject: eseal.Subject{OrgNumber: "991825828", Organization: "X"}, wantErr: "check digit is 8, want 7"},
		{name: "empty org number", pub: &rsaKey.PublicKey, subject: eseal.Subject{Organization: "X"}, wantErr: "has 0 characters"},
		{name: "no organization", pub: &rsaKey.PublicKey, subject: eseal.Subject{OrgNumber: digdir}, wantErr: "no organisation name"},
		{name: "outlives issuing CA", pub: &rsaKey.PublicKey, subject: good, validity: 6 * 365 * 24 * time.Hour, wantErr: "after the issuing CA expires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := ca.IssueESeal(tt.pub, tt.subject, tt.validity)
			if err == nil {
				t.Fatalf("IssueESeal() = %v, nil; want error containing %q", cert.Subject, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("IssueESeal() error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestIssueFromCSR(t *testing.T) {
	ca := newTestCA(t)
	key := testRSAKey(t, rsa2048)
	smallKey := testRSAKey(t, rsa1024)

	makeCSR := func(t *testing.T, signer any, subject pkix.Name) *x509.CertificateRequest {
		t.Helper()
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, signer)
		if err != nil {
			t.Fatalf("CreateCertificateRequest() error = %v", err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("ParseCertificateRequest() error = %v", err)
		}
		return csr
	}
	modern := eseal.Subject{OrgNumber: digdir, Organization: "DIGITALISERINGSDIREKTORATET", CommonName: "Digdir Portvakt"}
	legacy := eseal.Subject{OrgNumber: brreg, Organization: "BRØNNØYSUNDREGISTRENE", LegacySerialNumber: true}

	tests := []struct {
		name    string
		csr     func(t *testing.T) *x509.CertificateRequest
		want    orgno.Number
		wantErr string
	}{
		{
			name: "organizationIdentifier",
			csr:  func(t *testing.T) *x509.CertificateRequest { return makeCSR(t, key, modern.Name()) },
			want: digdir,
		},
		{
			name: "legacy serialNumber",
			csr:  func(t *testing.T) *x509.CertificateRequest { return makeCSR(t, key, legacy.Name()) },
			want: brreg,
		},
		{
			name: "bad signature",
			csr: func(t *testing.T) *x509.CertificateRequest {
				csr := makeCSR(t, key, modern.Name())
				csr.Signature[len(csr.Signature)/2] ^= 0xff
				return csr
			},
			wantErr: "CSR signature does not verify",
		},
		{
			name: "no organisation number",
			csr: func(t *testing.T) *x509.CertificateRequest {
				return makeCSR(t, key, pkix.Name{CommonName: "Anonymous", Country: []string{"NO"}})
			},
			wantErr: "carries no organisation number",
		},
		{
			name: "invalid organisation number",
			csr: func(t *testing.T) *x509.CertificateRequest {
				return makeCSR(t, key, eseal.Subject{OrgNumber: "991825828", Organization: "X"}.Name())
			},
			wantErr: "check digit is 8, want 7",
		},
		{
			name:    "small RSA key",
			csr:     func(t *testing.T) *x509.CertificateRequest { return makeCSR(t, smallKey, modern.Name()) },
			wantErr: "at least 2048 bits",
		},
		{
			name:    "nil CSR",
			csr:     func(*testing.T) *x509.CertificateRequest { return nil },
			wantErr: "CSR is nil",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := tt.csr(t)
			cert, err := ca.IssueFromCSR(csr, time.Hour)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("IssueFromCSR() = %v, nil; want error containing %q", cert.Subject, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("IssueFromCSR() error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("IssueFromCSR() error = %v", err)
			}
			verifyESeal(t, ca, cert)
			if string(cert.RawSubject) != string(csr.RawSubject) {
				t.Errorf("subject %q differs from CSR subject %q", cert.Subject, csr.Subject)
			}
			if n, err := orgno.FromCertificate(cert); err != nil || n != tt.want {
				t.Errorf("orgno.FromCertificate() = %q, %v; want %q", n, err, tt.want)
			}
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Error("certificate key is not the CSR key")
			}
		})
	}
}
