package hsm_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/portvakt/portvakt/eseal"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// The RSA keys and the CA are made once per test binary and shared: RSA key
// generation is the slow part of these tests. Nothing modifies them.
var (
	sharedKeyA = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	sharedKeyB = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	sharedCA   = sync.OnceValues(func() (*devca.CA, error) { return devca.New("Test CA") })
)

// keyA is the key the .p12 files of these tests hold.
func keyA(t *testing.T) *rsa.PrivateKey { return mustOnce(t, sharedKeyA) }

// keyB is another key, for certificates that do not belong to keyA.
func keyB(t *testing.T) *rsa.PrivateKey { return mustOnce(t, sharedKeyB) }

func testCA(t *testing.T) *devca.CA { return mustOnce(t, sharedCA) }

func mustOnce[T any](t *testing.T, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// issueESeal has the test CA certify pub for the test organisation.
func issueESeal(t *testing.T, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	cert, err := testCA(t).IssueESeal(pub, eseal.Subject{
		OrgNumber:    orgno.Number(softhsmtest.TestOrgNumber),
		Organization: "Test AS",
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// newPassword returns a distinctive .p12 password, so that finding it in an
// error message cannot be a coincidence.
func newPassword() string { return "p12pw-" + rand.Text()[:12] }

func encodeP12(t *testing.T, enc *pkcs12.Encoder, key *rsa.PrivateKey, leaf *x509.Certificate, cas []*x509.Certificate, password string) []byte {
	t.Helper()
	data, err := enc.Encode(key, leaf, cas, password)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestImportPKCS12RoundTrip(t *testing.T) {
	key := keyA(t)
	ca := testCA(t)
	leaf := issueESeal(t, &key.PublicKey)
	tests := []struct {
		name string
		enc  *pkcs12.Encoder
	}{
		{"Modern2023 (AES-256, PBKDF2)", pkcs12.Modern2023},
		// Buypass and Commfides deliver legacy 3DES/RC2 files.
		{"LegacyDES (as Buypass and Commfides deliver)", pkcs12.LegacyDES},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := softhsmtest.NewToken(t)
			password := newPassword()
			data := encodeP12(t, tt.enc, key, leaf, ca.Chain(), password)

			result, err := hsm.ImportPKCS12(tok.Token, data, mustPIN(t, password), hsm.KeySpec{Label: "imported"})
			if err != nil {
				t.Fatalf("ImportPKCS12: %v", err)
			}
			got := result.Key
			if got.Label != "imported" || len(got.ID) != 16 {
				t.Errorf("imported key label %q id %x; want label %q and a random 16-byte id", got.Label, got.ID, "imported")
			}
			if !got.Sensitive || got.Extractable {
				t.Errorf("imported key: sensitive %v, extractable %v; want sensitive and not extractable", got.Sensitive, got.Extractable)
			}
			// PKCS#11 (v2.40 §4.9) sets CKA_ALWAYS_SENSITIVE and
			// CKA_NEVER_EXTRACTABLE only for keys that were never outside a
			// token, and CKA_LOCAL only for keys generated on it. This key
			// existed in the .p12 file, so all three must read false although
			// the key is now sensitive and not extractable (SoftHSM2 2.6.1
			// says so itself; opencryptoki 3.8 claims the first two, see
			// below, and p11 does not believe it). Only CKA_SENSITIVE and
			// CKA_EXTRACTABLE can protect an imported key from here on.
			if got.AlwaysSensitive || got.NeverExtractable || got.Local {
				t.Errorf("imported key: always sensitive %v, never extractable %v, local %v; want all false: the key existed outside the token",
					got.AlwaysSensitive, got.NeverExtractable, got.Local)
			}
			if !samePublic(got.Public, &key.PublicKey) {
				t.Errorf("the token key's public half differs from the .p12 key's")
			}
			if result.CertificatesStored != 3 || result.Skipped != 0 {
				t.Errorf("stored %d certificates, skipped %d; want 3 stored (leaf, issuing, root), 0 skipped", result.CertificatesStored, result.Skipped)
			}

			inv, err := hsm.List(tok.Token)
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.Keys) != 1 || inv.Keys[0].Label != "imported" || !bytes.Equal(inv.Keys[0].ID, got.ID) {
				t.Fatalf("token keys = %+v; want only the imported key", inv.Keys)
			}
			if len(inv.Certificates) != 3 {
				t.Fatalf("token holds %d certificates, want 3 (leaf, issuing, root)", len(inv.Certificates))
			}
			wantCerts := []struct {
				role      string
				cert      *x509.Certificate
				id        []byte
				label     string
				forKey    string
				orgNumber string
			}{
				{"leaf", leaf, got.ID, "imported", "imported", softhsmtest.TestOrgNumber},
				{"issuing CA", ca.Issuing, ca.Issuing.SubjectKeyId, "Test CA Issuing CA", "", ""},
				{"root CA", ca.Root, ca.Root.SubjectKeyId, "Test CA Root CA", "", ""},
			}
			for _, w := range wantCerts {
				info, ok := findCertificate(inv, w.cert)
				if !ok {
					t.Errorf("the %s certificate is not on the token", w.role)
					continue
				}
				if info.Label != w.label || !bytes.Equal(info.ID, w.id) || info.ForKey != w.forKey || info.OrgNumber != w.orgNumber {
					t.Errorf("%s certificate: label %q id %x for key %q org number %q; want label %q id %x for key %q org number %q",
						w.role, info.Label, info.ID, info.ForKey, info.OrgNumber, w.label, w.id, w.forKey, w.orgNumber)
				}
			}

			assertPrivateExponentUnreadable(t, tok, got)
			assertCannot(t, tok, got, pkcs11.CKA_DECRYPT)
			assertCannot(t, tok, got, pkcs11.CKA_UNWRAP)

			// An independent client's view of what the token itself claims.
			// SoftHSM2 reports the imported key as "Access: sensitive" only:
			// for the reason above, neither "always sensitive" nor "never
			// extractable" nor "local". opencryptoki 3.8 claims "always
			// sensitive" and "never extractable" for any key created
			// sensitive and unextractable; that claim is why p11 reads the
			// two attributes only for keys the token generated.
			block := objectBlock(t, listObjects(t, tok), "Private Key Object", "imported")
			if !strings.Contains(block, "sensitive") {
				t.Errorf("pkcs11-tool does not show the imported key as sensitive:\n%s", block)
			}
			if strings.Contains(strings.ReplaceAll(block, "never extractable", ""), "extractable") {
				t.Errorf("pkcs11-tool shows the imported key as extractable:\n%s", block)
			}
			claims := map[string]bool{"always sensitive": false, "never extractable": false, "local": false}
			if softhsmtest.Implementation() == softhsmtest.OpenCryptoki {
				claims["always sensitive"], claims["never extractable"] = true, true
			}
			for claim, want := range claims {
				if got := strings.Contains(block, claim); got != want {
					t.Errorf("pkcs11-tool shows the imported key as %q: %v, want %v on %s:\n%s", claim, got, want, softhsmtest.Implementation(), block)
				}
			}

			assertSignsFor(t, tok, "imported", leaf)
		})
	}
}

// assertSignsFor opens the key labelled label the way the daemon does, signs
// with it and verifies the signature against cert.
func assertSignsFor(t *testing.T, tok softhsmtest.Token, label string, cert *x509.Certificate) {
	t.Helper()
	s, err := signer.Open(signer.Config{
		Token: signer.TokenConfig{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN},
		Key:   signer.KeyConfig{KeyLabel: label},
	})
	if err != nil {
		t.Fatalf("signer.Open: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the signer: %v", err)
		}
	}()
	if !s.Certificate().Equal(cert) {
		t.Errorf("the signer found certificate %q on the token, want %q", s.Certificate().Subject, cert.Subject)
	}
	digest := sha256.Sum256([]byte("a Maskinporten grant"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("signing with the key: %v", err)
	}
	if err := rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("the signature does not verify with the certificate's public key: %v", err)
	}
}

func samePublic(a, b *rsa.PublicKey) bool {
	return a != nil && b != nil && a.E == b.E && a.N.Cmp(b.N) == 0
}

func findCertificate(inv hsm.Inventory, cert *x509.Certificate) (hsm.CertificateInfo, bool) {
	for _, c := range inv.Certificates {
		if c.Certificate.Equal(cert) {
			return c, true
		}
	}
	return hsm.CertificateInfo{}, false
}

// tokenInventory summarises what hsm.List shows, sorted, to compare a token
// before and after an operation that must not change it.
func tokenInventory(t *testing.T, tok softhsmtest.Token) []string {
	t.Helper()
	inv, err := hsm.List(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, k := range inv.Keys {
		lines = append(lines, fmt.Sprintf("key label=%q id=%x", k.Label, k.ID))
	}
	for _, c := range inv.Certificates {
		lines = append(lines, fmt.Sprintf("certificate label=%q id=%x sha256=%s", c.Label, c.ID, c.SHA256))
	}
	slices.Sort(lines)
	return lines
}

func assertUnchanged(t *testing.T, before, after []string) {
	t.Helper()
	if !slices.Equal(before, after) {
		t.Errorf("the token changed:\nbefore:\n  %s\nafter:\n  %s", strings.Join(before, "\n  "), strings.Join(after, "\n  "))
	}
}

func TestImportPKCS12RefusesBadInput(t *testing.T) {
	key := keyA(t)
	ca := testCA(t)
	leaf := issueESeal(t, &key.PublicKey)
	password := newPassword()
	valid := encodeP12(t, pkcs12.Modern2023, key, leaf, ca.Chain(), password)

	// A byte flipped in the middle of the file lands inside the
	// authenticated safe, whose DER framing is an opaque OCTET STRING: the
	// file still parses, but its MAC no longer matches. PKCS#12 cannot tell
	// a damaged file from a wrong password (the MAC key is derived from the
	// password), so go-pkcs12 reports ErrIncorrectPassword and the import
	// reports ErrWrongPassword.
	flipped := bytes.Clone(valid)
	for i := len(flipped)/2 - 2; i < len(flipped)/2+2; i++ {
		flipped[i] ^= 0xff
	}
	// Cut short, the outer DER SEQUENCE is incomplete: not PKCS#12 at all.
	truncated := valid[:len(valid)/2]
	// Fixed garbage (the SHA-256 chain of a seed), so that the run is
	// repeatable.
	var garbage []byte
	for block := sha256.Sum256([]byte("garbage")); len(garbage) < 2048; block = sha256.Sum256(block[:]) {
		garbage = append(garbage, block[:]...)
	}
	trustStore, err := pkcs12.Modern2023.EncodeTrustStore(append([]*x509.Certificate{leaf}, ca.Chain()...), password)
	if err != nil {
		t.Fatal(err)
	}
	// keyA with a certificate issued for keyB.
	mismatched := encodeP12(t, pkcs12.Modern2023, key, issueESeal(t, &keyB(t).PublicKey), ca.Chain(), password)

	// The token already holds a certified key, so that "unchanged" means
	// something and so that label and id clashes can be tried.
	tok := softhsmtest.NewToken(t)
	tok.NewCertifiedKey(t, "existing", ca)
	inv, err := hsm.List(tok.Token)
	if err != nil || len(inv.Keys) != 1 {
		t.Fatalf("token set-up: %d keys, err %v", len(inv.Keys), err)
	}
	existingID := inv.Keys[0].ID

	tests := []struct {
		name     string
		data     []byte
		password string
		spec     hsm.KeySpec
		// wantErr is the sentinel the error must wrap; nil means the file
		// is fine and none of the three may be reported.
		wantErr error
		wantMsg []string
	}{
		{"wrong password", valid, "not-" + password, hsm.KeySpec{Label: "new"},
			hsm.ErrWrongPassword, []string{"could not be decrypted with the password given"}},
		{"bytes flipped in the middle (surfaces as a MAC failure)", flipped, password, hsm.KeySpec{Label: "new"},
			hsm.ErrWrongPassword, []string{"could not be decrypted with the password given"}},
		{"truncated", truncated, password, hsm.KeySpec{Label: "new"},
			hsm.ErrBadPKCS12, []string{"damaged or not PKCS#12"}},
		{"random garbage", garbage, password, hsm.KeySpec{Label: "new"},
			hsm.ErrBadPKCS12, []string{"damaged or not PKCS#12"}},
		{"empty file", nil, password, hsm.KeySpec{Label: "new"},
			hsm.ErrBadPKCS12, []string{"damaged or not PKCS#12"}},
		{"trust store without a key", trustStore, password, hsm.KeySpec{Label: "new"},
			hsm.ErrBadPKCS12, []string{"no private key", "trust store"}},
		{"certificate for another key", mismatched, password, hsm.KeySpec{Label: "new"},
			hsm.ErrMismatch, []string{"does not belong to its key", "is not for this key"}},
		{"label already taken", valid, password, hsm.KeySpec{Label: "existing"},
			nil, []string{`already holds a key labelled "existing"`, "choose another label"}},
		{"id already taken", valid, password, hsm.KeySpec{Label: "new", ID: existingID},
			nil, []string{"already holds a key with id " + hex.EncodeToString(existingID), "choose another id"}},
		{"empty label", valid, password, hsm.KeySpec{},
			nil, []string{"label is required"}},
	}
	sentinels := []error{hsm.ErrWrongPassword, hsm.ErrBadPKCS12, hsm.ErrMismatch}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tokenInventory(t, tok)
			_, err := hsm.ImportPKCS12(tok.Token, tt.data, mustPIN(t, tt.password), tt.spec)
			if err == nil {
				t.Fatal("ImportPKCS12 succeeded; want it refused")
			}
			for _, s := range sentinels {
				if want := s == tt.wantErr; errors.Is(err, s) != want {
					t.Errorf("errors.Is(err, %q) = %v, want %v; err: %v", s, !want, want, err)
				}
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), tt.password) {
				t.Errorf("error reveals the password: %v", err)
			}
			assertUnchanged(t, before, tokenInventory(t, tok))
		})
	}
}

// TestImportPKCS12RollsBackAfterWriteFailure makes the import fail after it
// has written the key pair: ImportPKCS12 reads the certificates already on
// the token (to skip duplicates) only after creating the private and public
// key objects, and a certificate object whose value is not DER makes that
// read fail. Everything written must be removed again.
func TestImportPKCS12RollsBackAfterWriteFailure(t *testing.T) {
	key := keyA(t)
	ca := testCA(t)
	password := newPassword()
	data := encodeP12(t, pkcs12.Modern2023, key, issueESeal(t, &key.PublicKey), ca.Chain(), password)

	tok := softhsmtest.NewToken(t)
	withRawSession(t, tok, func(m *p11.Module, s pkcs11.SessionHandle) {
		if _, err := m.CreateObject(s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
			pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "damaged"),
			pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, []byte{0x30, 0x00}),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("not a DER certificate")),
		}); err != nil {
			t.Fatalf("creating the damaged certificate object: %v", err)
		}
	})
	before := tokenObjects(t, tok)

	_, err := hsm.ImportPKCS12(tok.Token, data, mustPIN(t, password), hsm.KeySpec{Label: "imported"})
	if err == nil {
		t.Fatal("ImportPKCS12 succeeded on a token whose certificates cannot be read")
	}
	if !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("error %q does not name the unreadable certificate object", err)
	}
	if strings.Contains(err.Error(), "remove them by hand") {
		t.Errorf("rollback failed: %v", err)
	}
	after := tokenObjects(t, tok)
	assertUnchanged(t, before, after)
	for _, o := range after {
		if strings.Contains(o, "imported") {
			t.Errorf("the failed import left %s behind", o)
		}
	}
}

// tokenObjects lists every object on the token (class and label), read
// directly over PKCS#11 rather than through hsm.List, which cannot read a
// token holding a damaged certificate.
func tokenObjects(t *testing.T, tok softhsmtest.Token) []string {
	t.Helper()
	var objects []string
	withRawSession(t, tok, func(m *p11.Module, s pkcs11.SessionHandle) {
		if err := m.FindObjectsInit(s, nil); err != nil {
			t.Fatal(err)
		}
		var handles []pkcs11.ObjectHandle
		for {
			batch, _, err := m.FindObjects(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch) == 0 {
				break
			}
			handles = append(handles, batch...)
		}
		if err := m.FindObjectsFinal(s); err != nil {
			t.Fatal(err)
		}
		classes := map[uint]string{pkcs11.CKO_PRIVATE_KEY: "private key", pkcs11.CKO_PUBLIC_KEY: "public key", pkcs11.CKO_CERTIFICATE: "certificate"}
		for _, h := range handles {
			attrs, err := m.GetAttributeValue(s, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			})
			if err != nil {
				t.Fatal(err)
			}
			class := fmt.Sprintf("class %x", attrs[0].Value)
			if c, ok := classes[p11.DecodeULong(attrs[0].Value)]; ok {
				class = c
			}
			objects = append(objects, fmt.Sprintf("%s label=%q", class, attrs[1].Value))
		}
	})
	slices.Sort(objects)
	return objects
}
