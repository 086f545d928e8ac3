package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestServeCheckRegisteredKey: `serve --check` accepts an environment whose
// key is registered by kid and has no certificate on the token, checked
// against its public_key_file; and it prints a warning line for the retired
// ver2 preset, which still loads, as the daemon logs a WARN for it.
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
	out, _ := tr.run(t, "serve", "--config", filepath.Join(dir, "portvakt.yaml"), "--check"); t.Log(out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "warning: environments[1] (old).preset ver2: ") || !strings.Contains(lines[0], "retired on 10 June 2024") ||
		!strings.HasPrefix(lines[1], "ok: ") {
		t.Errorf("serve --check printed:\n%s\nwant the ver2 warning, then ok", out)
	}
	// The daemon logs the same warning at start, as a WARN.
	if !strings.Contains(tr.String(), `"level":"WARN","msg":"environments[1] (old).preset ver2: Maskinporten's ver2 environment was retired on 10 June 2024`) {
		t.Errorf("the log has no WARN for ver2:\n%s", tr.String())
	}
	if !strings.Contains(tr.String(), "no certificate: registered key portvakt-2026") {
		t.Errorf("the log does not say the environment has no certificate:\n%s", tr.String())
	}
}
