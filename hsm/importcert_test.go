package hsm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"github.com/portvakt/portvakt/eseal"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// tokenKey returns the public half of the only key on the token, as hsm.List
// reads it.
func tokenKey(t *testing.T, tok softhsmtest.Token) *rsa.PublicKey {
	t.Helper()
	inv, err := hsm.List(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Keys) != 1 || inv.Keys[0].Public == nil {
		t.Fatalf("token keys = %+v; want exactly one RSA key", inv.Keys)
	}
	return inv.Keys[0].Public
}

func TestCreateCSR(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "eseal")
	subject := eseal.Subject{
		OrgNumber:    orgno.Number(softhsmtest.TestOrgNumber),
		Organization: "Test AS",
		CommonName:   "Test AS eSeal",
	}
	der, err := hsm.CreateCSR(tok.Token, hsm.KeySelector{Label: "eseal"}, subject.Name())
	if err != nil {
		t.Fatalf("CreateCSR: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("the CSR does not parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("the CSR's signature does not verify: %v", err)
	}
	if csr.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("CSR signature algorithm %v, want SHA256-RSA", csr.SignatureAlgorithm)
	}
	if pub, ok := csr.PublicKey.(*rsa.PublicKey); !ok || !samePublic(pub, tokenKey(t, tok)) {
		t.Errorf("the CSR's public key is not the token key's")
	}

	s := csr.Subject
	if s.CommonName != "Test AS eSeal" || !slices.Equal(s.Organization, []string{"Test AS"}) || !slices.Equal(s.Country, []string{"NO"}) {
		t.Errorf("CSR subject CN %q O %q C %q; want CN %q O [Test AS] C [NO]", s.CommonName, s.Organization, s.Country, "Test AS eSeal")
	}
	var orgIDs []any
	for _, n := range s.Names {
		if n.Type.Equal(orgno.OIDOrganizationIdentifier) {
			orgIDs = append(orgIDs, n.Value)
		}
	}
	if len(orgIDs) != 1 || orgIDs[0] != "NTRNO-"+softhsmtest.TestOrgNumber {
		t.Errorf("CSR organizationIdentifier (2.5.4.97) = %v, want [NTRNO-%s]", orgIDs, softhsmtest.TestOrgNumber)
	}
	if n, err := orgno.FromName(s); err != nil || n.String() != softhsmtest.TestOrgNumber {
		t.Errorf("orgno.FromName(CSR subject) = %q, %v; want %s", n, err, softhsmtest.TestOrgNumber)
	}
}

func TestCreateCSRForMissingKey(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "eseal")
	subject := eseal.Subject{OrgNumber: orgno.Number(softhsmtest.TestOrgNumber), Organization: "Test AS"}
	_, err := hsm.CreateCSR(tok.Token, hsm.KeySelector{Label: "other"}, subject.Name())
	if err == nil || !strings.Contains(err.Error(), "hsm list") {
		t.Fatalf("CreateCSR for a key that is not there: %v; want it to point to `portvakt hsm list`", err)
	}
}

func TestImportCertificates(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "eseal")
	ca := testCA(t)
	subject := eseal.Subject{OrgNumber: orgno.Number(softhsmtest.TestOrgNumber), Organization: "Test AS"}
	der, err := hsm.CreateCSR(tok.Token, hsm.KeySelector{Label: "eseal"}, subject.Name())
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueFromCSR(csr, 0)
	if err != nil {
		t.Fatal(err)
	}
	chain := append([]*x509.Certificate{leaf}, ca.Chain()...)

	result, err := hsm.ImportCertificates(tok.Token, hsm.KeySelector{Label: "eseal"}, chain, time.Now())
	if err != nil {
		t.Fatalf("ImportCertificates: %v", err)
	}
	if result.CertificatesStored != 3 || result.Skipped != 0 || result.Key.Label != "eseal" {
		t.Errorf("first import: stored %d, skipped %d, key %q; want 3 stored, 0 skipped, key \"eseal\"",
			result.CertificatesStored, result.Skipped, result.Key.Label)
	}
	again, err := hsm.ImportCertificates(tok.Token, hsm.KeySelector{Label: "eseal"}, chain, time.Now())
	if err != nil {
		t.Fatalf("repeating the import: %v", err)
	}
	if again.CertificatesStored != 0 || again.Skipped != 3 {
		t.Errorf("repeated import: stored %d, skipped %d; want 0 stored, 3 skipped", again.CertificatesStored, again.Skipped)
	}

	inv, err := hsm.List(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Keys) != 1 || len(inv.Certificates) != 3 {
		t.Fatalf("token holds %d keys and %d certificates after two imports; want 1 and 3", len(inv.Keys), len(inv.Certificates))
	}
	keyID := inv.Keys[0].ID
	info, ok := findCertificate(inv, leaf)
	if !ok {
		t.Fatal("the key's certificate is not on the token")
	}
	if info.ForKey != "eseal" || info.Label != "eseal" || !bytes.Equal(info.ID, keyID) || info.OrgNumber != softhsmtest.TestOrgNumber {
		t.Errorf("key certificate: for key %q, label %q, id %x, org number %q; want for key, label \"eseal\", id %x, org number %s",
			info.ForKey, info.Label, info.ID, info.OrgNumber, keyID, softhsmtest.TestOrgNumber)
	}
	for _, c := range ca.Chain() {
		info, ok := findCertificate(inv, c)
		if !ok {
			t.Errorf("CA certificate %q is not on the token", c.Subject)
			continue
		}
		if info.ForKey != "" || info.Label != c.Subject.CommonName || !bytes.Equal(info.ID, c.SubjectKeyId) {
			t.Errorf("CA certificate %q: for key %q, label %q, id %x; want no key, label %q, id %x",
				c.Subject, info.ForKey, info.Label, info.ID, c.Subject.CommonName, c.SubjectKeyId)
		}
	}
}

func TestImportCertificatesRefusesBadChains(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "eseal")
	public := tokenKey(t, tok)
	ca := testCA(t)
	leaf := issueESeal(t, public)
	now := time.Now()
	year := 365 * 24 * time.Hour

	// A hierarchy of our own for validity periods devca will not issue.
	root, rootKey := newTestCA(t, "Throwaway Root", nil, nil, now.Add(-2*year), now.Add(5*year))
	expiredLeaf := newLeaf(t, public, root, rootKey, now.Add(-2*year), now.Add(-year))

	tests := []struct {
		name    string
		sel     hsm.KeySelector
		chain   []*x509.Certificate
		now     time.Time
		wantErr error // ErrMismatch or nil
		wantMsg []string
	}{
		{"certificate for another key", hsm.KeySelector{Label: "eseal"},
			[]*x509.Certificate{issueESeal(t, &keyA(t).PublicKey), ca.Issuing, ca.Root}, now,
			hsm.ErrMismatch, []string{"is not for this key"}},
		{"chain out of order", hsm.KeySelector{Label: "eseal"},
			[]*x509.Certificate{leaf, ca.Root, ca.Issuing}, now,
			nil, []string{"did not issue", "give the key's certificate first"}},
		{"CA certificates only", hsm.KeySelector{Label: "eseal"},
			[]*x509.Certificate{ca.Issuing, ca.Root}, now,
			hsm.ErrMismatch, []string{"is not for this key"}},
		{"expired certificate", hsm.KeySelector{Label: "eseal"},
			[]*x509.Certificate{expiredLeaf, root}, now,
			nil, []string{"expired", "import a valid one"}},
		{"certificate expired at the time given", hsm.KeySelector{Label: "eseal"},
			[]*x509.Certificate{leaf, ca.Issuing, ca.Root}, leaf.NotAfter.Add(time.Hour),
			nil, []string{"expired"}},
		{"empty chain", hsm.KeySelector{Label: "eseal"},
			nil, now,
			nil, []string{"no certificate to import"}},
		{"no key with that label", hsm.KeySelector{Label: "other"},
			[]*x509.Certificate{leaf, ca.Issuing, ca.Root}, now,
			nil, []string{`no private key with label "other"`, "hsm list"}},
		{"no key selected", hsm.KeySelector{},
			[]*x509.Certificate{leaf, ca.Issuing, ca.Root}, now,
			nil, []string{"select the key by label or id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tokenInventory(t, tok)
			_, err := hsm.ImportCertificates(tok.Token, tt.sel, tt.chain, tt.now)
			if err == nil {
				t.Fatal("ImportCertificates succeeded; want it refused")
			}
			if got := errors.Is(err, hsm.ErrMismatch); got != (tt.wantErr == hsm.ErrMismatch) {
				t.Errorf("errors.Is(err, ErrMismatch) = %v; err: %v", got, err)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			assertUnchanged(t, before, tokenInventory(t, tok))
		})
	}
}

// TestImportCertificatesRefusesExpiredIssuer imports a valid key certificate
// whose issuing CA certificate has expired. Such a chain no longer verifies
// anywhere (a Maskinporten grant signed with it would be refused), and
// checkChain's documentation promises to refuse "an expired certificate,
// saying which certificate is wrong", not only an expired first one.
func TestImportCertificatesRefusesExpiredIssuer(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "eseal")
	public := tokenKey(t, tok)
	now := time.Now()
	year := 365 * 24 * time.Hour
	root, rootKey := newTestCA(t, "Throwaway Root", nil, nil, now.Add(-2*year), now.Add(5*year))
	issuing, issuingKey := newTestCA(t, "Throwaway Expired Issuing", root, rootKey, now.Add(-2*year), now.Add(-year))
	leaf := newLeaf(t, public, issuing, issuingKey, now.Add(-time.Hour), now.Add(year))

	before := tokenInventory(t, tok)
	_, err := hsm.ImportCertificates(tok.Token, hsm.KeySelector{Label: "eseal"}, []*x509.Certificate{leaf, issuing, root}, now)
	if err == nil {
		t.Fatalf("ImportCertificates stored a chain whose issuing CA %q expired on %s",
			issuing.Subject, issuing.NotAfter.Format(time.DateOnly))
	}
	for _, m := range []string{"expired", "Throwaway Expired Issuing"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not say %q", err, m)
		}
	}
	assertUnchanged(t, before, tokenInventory(t, tok))
}

// newTestCA makes a CA certificate valid from notBefore to notAfter, signed
// by parent (self-signed when parent is nil).
func newTestCA(t *testing.T, name string, parent *x509.Certificate, parentKey crypto.Signer, notBefore, notAfter time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name, Country: []string{"NO"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	return createCertificate(t, tmpl, parent, key.Public(), parentKey), key
}

// newLeaf makes an eSeal-like certificate for pub valid from notBefore to
// notAfter, signed by issuer.
func newLeaf(t *testing.T, pub crypto.PublicKey, issuer *x509.Certificate, issuerKey crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	subject := eseal.Subject{OrgNumber: orgno.Number(softhsmtest.TestOrgNumber), Organization: "Test AS"}
	return createCertificate(t, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      subject.Name(),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
	}, issuer, pub, issuerKey)
}

func createCertificate(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
