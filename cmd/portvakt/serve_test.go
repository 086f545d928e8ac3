package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestServeCheckRegisteredKey: `serve --check` accepts an environment whose
// key is registered by kid and has no certificate on the token, checked
// against its public_key_file; and it prints a warning line for the retired
// ver2 preset, which still loads.
func TestServeCheckRegisteredKey(t *testing.T) {
	if softhsmtest.Implementation() == softhsmtest.SoftHSM2 {
		// The hsm tests' --softhsm-dir points SOFTHSM2_CONF at their own
		// directory, gone by now: back to the test binary's.
		t.Setenv("SOFTHSM2_CONF", softhsmtest.Dir().ConfigFile())
	}
	tok := softhsmtest.NewToken(t)
	key, err := hsm.GenerateKey(tok.Token, hsm.KeySpec{Label: "registered", Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(key.Public)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"registered.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		"policy.yaml":    "clients:\n  - name: billing\n    identities: [uid:1000]\n    rules:\n      - {environments: [test, old], scopes: [svv:kjoretoy/ecoc]}\n",
		"portvakt.yaml": fmt.Sprintf(`listen:
  unix: {path: portvakt.sock}
hsm: {module: %q, token: %q, pin: {env: PORTVAKT_CHECK_PIN}}
environments:
  - {name: test, preset: test, client_id: kid-client, key_label: registered, kid: portvakt-2026, public_key_file: registered.pem}
  - {name: old, preset: ver2, client_id: kid-client, key_label: registered, kid: portvakt-2026}
policy: policy.yaml
audit: {file: audit/audit.log}
`, tok.Module, tok.Label),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PORTVAKT_CHECK_PIN", tok.PIN.Reveal())
	tr := &transcript{}
	// The presets' endpoints are Maskinporten's own: whether they answer
	// depends on the network here, so their checks are not looked at.
	out, _ := tr.run(t, "serve", "--config", filepath.Join(dir, "portvakt.yaml"), "--check")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"warning configuration: environments[1] (old).preset ver2: Maskinporten's ver2 environment was retired on 10 June 2024",
		`ok      key (environment test): key label "registered" signs; it is registered by kid portvakt-2026, without a certificate`,
		`ok      key (environment old): key label "registered" signs; it is registered by kid portvakt-2026, without a certificate`,
	}
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("serve --check printed no line %q:\n%s", w, out)
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "FAIL") && !strings.HasPrefix(l, "FAIL    token endpoint ") {
			t.Errorf("serve --check failed a check:\n%s", l)
		}
	}
}
