package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/eseal"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// transcript collects everything the commands printed and every error they
// returned, so that a test can search all of it for secrets.
type transcript struct{ bytes.Buffer }

// run executes one portvakt command line in-process, as main would.
func (tr *transcript) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.Execute()
	tr.WriteString(stdout.String() + stderr.String())
	if err != nil {
		tr.WriteString("portvakt: " + err.Error() + "\n")
	}
	return stdout.String(), err
}

func (tr *transcript) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tr.run(t, args...)
	if err != nil {
		t.Fatalf("portvakt %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestHSMCommandsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	tr := &transcript{}
	sel := commandToken(t, tr, file)
	tok := append(append([]string(nil), sel...), "--pin-file", file("user.pin"))
	hsmCmd := func(sub string, extra ...string) []string {
		return append(append([]string{"hsm", sub}, tok...), extra...)
	}

	tr.must(t, append(hsmCmd("keygen"), "--label", "eseal", "--bits", "2048")...)
	tr.must(t, append(hsmCmd("csr"), "--label", "eseal", "--org-number", "991825827", "--organization", "CLI Test AS", "--out", file("eseal.csr"))...)
	tr.must(t, "devca", "init", "--dir", file("ca"))
	tr.must(t, "devca", "issue", "--dir", file("ca"), "--csr", file("eseal.csr"), "--out", file("chain.pem"))
	tr.must(t, append(hsmCmd("import-cert"), "--label", "eseal", "--cert", file("chain.pem"))...)
	if out := tr.must(t, append(hsmCmd("check"), "--label", "eseal")...); strings.Count(out, "verified with the certificate") != 3 {
		t.Fatalf("hsm check did not verify three algorithms:\n%s", out)
	}

	// A .p12 as a CA delivers it, moved into the token under a second label.
	p12Password := "p12-Passw0rd-" + rand.Text()[:8]
	writeP12(t, file("legacy.p12"), p12Password)
	os.WriteFile(file("p12.pass"), []byte(p12Password+"\n"), 0o600)
	os.WriteFile(file("wrong.pass"), []byte("not-it\n"), 0o600)
	if _, err := tr.run(t, append(hsmCmd("import-p12"), "--file", file("legacy.p12"), "--password-file", file("wrong.pass"), "--label", "imported")...); err == nil ||
		!strings.Contains(err.Error(), "could not be decrypted with the password") || !strings.Contains(err.Error(), "token is unchanged") {
		t.Fatalf("import-p12 with a wrong password: %v", err)
	}
	tr.must(t, append(hsmCmd("import-p12"), "--file", file("legacy.p12"), "--password-file", file("p12.pass"), "--label", "imported")...)

	var inv struct {
		Keys []struct {
			Label                  string
			Sensitive, Extractable bool
			NeverExtractable       bool `json:"never_extractable"`
			Bits                   int
		}
		Certificates []struct {
			ForKey    string `json:"for_key"`
			OrgNumber string `json:"org_number"`
		}
	}
	if err := json.Unmarshal([]byte(tr.must(t, append(hsmCmd("list"), "--json")...)), &inv); err != nil {
		t.Fatal(err)
	}
	if len(inv.Keys) != 2 {
		t.Fatalf("hsm list shows %d keys, want eseal and imported", len(inv.Keys))
	}
	for _, k := range inv.Keys {
		if !k.Sensitive || k.Extractable || k.Bits != 2048 {
			t.Errorf("key %+v: want sensitive, not extractable, 2048 bits", k)
		}
		if k.Label == "eseal" && !k.NeverExtractable {
			t.Errorf("generated key is not never-extractable: %+v", k)
		}
	}
	forKey := map[string]string{}
	for _, c := range inv.Certificates {
		if c.ForKey != "" {
			forKey[c.ForKey] = c.OrgNumber
		}
	}
	if forKey["eseal"] != "991825827" || forKey["imported"] != "991825827" {
		t.Fatalf("certificates by key = %v, want both keys certified for 991825827", forKey)
	}

	// A wrong PIN, from the environment this time.
	t.Setenv("PORTVAKT_TEST_WRONG_PIN", "Wrong-PIN-31337")
	_, err := tr.run(t, append(append([]string{"hsm", "list"}, sel...), "--pin-env", "PORTVAKT_TEST_WRONG_PIN")...)
	if err == nil || !strings.Contains(err.Error(), "refused the PIN") {
		t.Fatalf("list with a wrong PIN: %v", err)
	}

	userPIN, _ := os.ReadFile(file("user.pin"))
	soPIN, _ := os.ReadFile(file("so.pin"))
	for name, secret := range map[string]string{
		"user PIN": strings.TrimSpace(string(userPIN)), "SO PIN": strings.TrimSpace(string(soPIN)),
		"wrong PIN": "Wrong-PIN-31337", ".p12 password": p12Password,
	} {
		if len(secret) < 8 {
			t.Fatalf("%s %q is too short to search for", name, secret)
		}
		if strings.Contains(tr.String(), secret) {
			t.Errorf("the %s appears in the commands' output or errors", name)
		}
	}
}

// commandToken makes the token the commands work on, with its user PIN in
// file("user.pin") and its SO PIN in file("so.pin"), and returns the flags
// that select it. On SoftHSM2 that is `hsm init` itself, in a directory of
// the test's own. opencryptoki's soft token is one per machine, which
// softhsmtest re-initialises for each test; `hsm init` wants a slot with an
// uninitialised token, which it never is then.
func commandToken(t *testing.T, tr *transcript, file func(string) string) []string {
	t.Helper()
	if softhsmtest.Implementation() == softhsmtest.SoftHSM2 {
		sel := []string{"--softhsm-dir", file("hsm"), "--token", "cli-test"}
		tr.must(t, append(append([]string{"hsm", "init"}, sel...), "--pin-file", file("user.pin"), "--so-pin-file", file("so.pin"), "--create-pins")...)
		return sel
	}
	tok := softhsmtest.NewToken(t)
	for name, pin := range map[string]secret.Value{"user.pin": tok.PIN, "so.pin": tok.SOPIN} {
		if err := os.WriteFile(file(name), []byte(pin.Reveal()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"--module", tok.Module, "--token", tok.Label}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"hsm", "list"}, "--token is required"},
		{[]string{"hsm", "keygen", "--token", "x", "--pin-env", "HOME"}, "--label is required"},
		{[]string{"hsm", "csr", "--token", "x", "--org-number", "123", "--organization", "X", "--label", "k"}, "--org-number"},
		{[]string{"hsm", "init", "--token", "x"}, "--softhsm-dir"},
		{[]string{"hsm", "list", "--no-such-flag"}, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := (&transcript{}).run(t, tt.args...)
			var usage usageError
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v (usage error: %v), want a usage error saying %q", err, errors.As(err, &usage), tt.want)
			}
		})
	}
}

// writeP12 makes a legacy-encrypted .p12 with a fresh key and a certificate
// from a development CA, as Buypass and Commfides deliver soft eSeals.
func writeP12(t *testing.T, path, password string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := devca.New("CLI P12")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueESeal(&key.PublicKey, eseal.Subject{OrgNumber: "991825827", Organization: "CLI Test AS"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := pkcs12.LegacyDES.Encode(key, cert, ca.Chain(), password)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
