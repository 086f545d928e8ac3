package hsm_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

func TestGenerateKeyIsSensitiveAndNeverExtractable(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	key, err := hsm.GenerateKey(tok.Token, hsm.KeySpec{Label: "eseal", Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if !key.Sensitive || key.Extractable || !key.AlwaysSensitive || !key.NeverExtractable || !key.Local {
		t.Fatalf("generated key attributes = %+v; want sensitive, always sensitive, never extractable, local", key)
	}
	if len(key.ID) != 16 || key.Public == nil || key.Public.N.BitLen() != 2048 {
		t.Fatalf("generated key: id %x, public %v", key.ID, key.Public)
	}
	assertPrivateExponentUnreadable(t, tok, key)
	assertCannot(t, tok, key, pkcs11.CKA_DECRYPT)

	out := listObjects(t, tok)
	block := objectBlock(t, out, "Private Key Object", "eseal")
	for _, want := range []string{"sensitive", "always sensitive", "never extractable", "local"} {
		if !strings.Contains(block, want) {
			t.Errorf("pkcs11-tool does not show the key as %q:\n%s", want, block)
		}
	}
	if strings.Contains(strings.ReplaceAll(block, "never extractable", ""), "extractable") {
		t.Errorf("pkcs11-tool shows the key as extractable:\n%s", block)
	}
}

func TestGenerateKeyRefusesDuplicatesAndBadSizes(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "eseal")
	tests := []struct {
		name string
		spec hsm.KeySpec
		want string
	}{
		{"same label", hsm.KeySpec{Label: "eseal", Bits: 2048}, "already holds a key labelled"},
		{"1024 bits", hsm.KeySpec{Label: "small", Bits: 1024}, "choose 2048 or 3072"},
		{"no label", hsm.KeySpec{Bits: 2048}, "label is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hsm.GenerateKey(tok.Token, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("GenerateKey() error = %v, want %q", err, tt.want)
			}
		})
	}
	inv, err := hsm.List(tok.Token)
	if err != nil || len(inv.Keys) != 1 {
		t.Fatalf("token holds %d keys after refused generations, want 1 (err %v)", len(inv.Keys), err)
	}
}

func TestInitTokenRefusesTakenLabel(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	err := hsm.InitToken(tok.Module, tok.Label, tok.SOPIN, tok.PIN)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("InitToken with a taken label: %v", err)
	}
}

func TestWrongPINIsRefusedClearly(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.PIN = mustPIN(t, "not-the-pin-1234")
	_, err := hsm.List(tok.Token)
	if err == nil || !strings.Contains(err.Error(), "refused the PIN") {
		t.Fatalf("List with a wrong PIN: %v", err)
	}
	if strings.Contains(err.Error(), "not-the-pin-1234") {
		t.Fatalf("error reveals the PIN: %v", err)
	}
}

// assertPrivateExponentUnreadable asks the token for the key's private
// exponent directly: a sensitive key must refuse.
func assertPrivateExponentUnreadable(t *testing.T, tok softhsmtest.Token, key p11.KeyObject) {
	t.Helper()
	withRawSession(t, tok, func(m *p11.Module, s pkcs11.SessionHandle) {
		_, err := m.GetAttributeValue(s, handleOf(t, m, s, key.Label), []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, nil)})
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Fatalf("reading the private exponent: err = %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
	})
}

// assertCannot checks that a usage attribute of the private key is false.
func assertCannot(t *testing.T, tok softhsmtest.Token, key p11.KeyObject, attr uint) {
	t.Helper()
	withRawSession(t, tok, func(m *p11.Module, s pkcs11.SessionHandle) {
		attrs, err := m.GetAttributeValue(s, handleOf(t, m, s, key.Label), []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if v := attrs[0].Value; len(v) != 1 || v[0] != 0 {
			t.Fatalf("key attribute %#x = %v, want false", attr, v)
		}
	})
}

func withRawSession(t *testing.T, tok softhsmtest.Token, f func(*p11.Module, pkcs11.SessionHandle)) {
	t.Helper()
	m, err := p11.Open(tok.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := m.OpenSession(tok.Label)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.CloseSession(s) }()
	if err := m.Login(s, pkcs11.CKU_USER, tok.PIN.Reveal()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Logout(s) }()
	f(m, s)
}

// handleOf finds the private key labelled label in this session: object
// handles do not outlive the sessions they were found in.
func handleOf(t *testing.T, m *p11.Module, s pkcs11.SessionHandle, label string) pkcs11.ObjectHandle {
	t.Helper()
	keys, err := m.PrivateKeys(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Label == label {
			return k.Handle
		}
	}
	t.Fatalf("no private key labelled %q", label)
	return 0
}

// listObjects runs OpenSC's pkcs11-tool, an independent PKCS#11 client, on
// the token. pkcs11-tool
// only takes the PIN as an argument: acceptable for a throwaway test token.
func listObjects(t *testing.T, tok softhsmtest.Token) string {
	t.Helper()
	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		t.Fatal("pkcs11-tool not found: install opensc (make deps)")
	}
	out, err := exec.Command(tool, "--module", tok.Module, "--token-label", tok.Label,
		"--login", "--pin", tok.PIN.Reveal(), "--list-objects").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	return string(out)
}

// objectBlock returns the lines pkcs11-tool printed for the object of kind
// labelled label: a header line starting with kind, then indented lines.
func objectBlock(t *testing.T, out, kind, label string) string {
	t.Helper()
	var blocks []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, " ") && len(blocks) > 0:
			blocks[len(blocks)-1] += line + "\n"
		case strings.HasPrefix(line, kind):
			blocks = append(blocks, line+"\n")
		default:
			blocks = append(blocks, "") // another kind of object
		}
	}
	for _, b := range blocks {
		if strings.HasPrefix(b, kind) && strings.Contains(b, "label:      "+label+"\n") {
			return b
		}
	}
	t.Fatalf("pkcs11-tool lists no %s labelled %q:\n%s", kind, label, out)
	return ""
}
