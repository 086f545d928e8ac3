package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a configuration and the files it names into a
// temporary directory.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"policy.yaml", "user.pin", "server.pem", "server-key.pem", "clients-ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "portvakt.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const validConfig = `
listen:
  unix: {path: portvakt.sock}
  tcp:
    address: 0.0.0.0:8443
    cert_file: server.pem
    key_file: server-key.pem
    client_ca_file: clients-ca.pem
hsm:
  token: portvakt
  pin: {file: user.pin}
environments:
  - name: test
    preset: test
    client_id: 0b1c5c0f-test
    key_label: eseal
  - name: local
    issuer: http://127.0.0.1:8089/
    token_endpoint: http://127.0.0.1:8089/token
    client_id: local-client
    key_label: eseal
    default_resource: none
policy: policy.yaml
audit: {file: audit/audit.log}
cache: {refresh_margin: 45s}
`

func TestLoadValid(t *testing.T) {
	path := writeConfig(t, validConfig)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	if cfg.Listen.Unix.Path != filepath.Join(dir, "portvakt.sock") || cfg.Policy != filepath.Join(dir, "policy.yaml") || cfg.HSMs[0].PIN.File != filepath.Join(dir, "user.pin") {
		t.Errorf("relative paths not resolved against the file's directory: %+v", cfg)
	}
	if cfg.Listen.Unix.Mode != "0660" || cfg.HSMs[0].MaxSessions != 4 || cfg.Log.Format != "json" || cfg.Environments[0].GrantAlg != "RS256" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.Cache.RefreshMargin.Seconds() != 45 {
		t.Errorf("refresh margin = %v", cfg.Cache.RefreshMargin)
	}
	test, err := cfg.Environments[0].Resolve()
	if err != nil || test.Issuer != "https://test.maskinporten.no/" || test.Resource != "https://www.utv.vegvesen.no" {
		t.Errorf("test preset resolved to %+v, %v", test, err)
	}
	local, err := cfg.Environments[1].Resolve()
	if err != nil || local.Resource != "" || local.TokenEndpoint != "http://127.0.0.1:8089/token" {
		t.Errorf("custom environment resolved to %+v, %v", local, err)
	}
}

func TestLoadErrorsSayWhatToFix(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string // in validConfig
		want    string
	}{
		{"unknown key names its line", [2]string{"cache: {refresh_margin: 45s}", "cache: {refresh_margn: 45s}"}, "portvakt.yaml:25: cache.refresh_margn: unknown key; did you mean refresh_margin?"},
		{"unknown preset", [2]string{"preset: test", "preset: staging"}, `unknown Maskinporten environment "staging"`},
		{"issuer without slash", [2]string{"issuer: http://127.0.0.1:8089/", "issuer: http://127.0.0.1:8089"}, `must end with "/"`},
		{"plain http elsewhere", [2]string{"issuer: http://127.0.0.1:8089/", "issuer: http://maskinporten.example/"}, "must use https"},
		{"no client id", [2]string{"client_id: local-client", "client_id: \"\""}, "client_id: missing; give the Maskinporten integration's client id"},
		{"duplicate environment", [2]string{"name: local", "name: test"}, `"test" is configured twice`},
		{"missing pin file", [2]string{"pin: {file: user.pin}", "pin: {file: nope.pin}"}, "no such file"},
		{"pin from two places", [2]string{"pin: {file: user.pin}", "pin: {file: user.pin, env: PIN}"}, "not both"},
		{"mTLS files missing", [2]string{"    client_ca_file: clients-ca.pem\n", ""}, "client_ca_file is required"},
		{"insecure off loopback", [2]string{"    cert_file: server.pem", "    insecure: true"}, "only on a loopback address"},
		{"world-writable socket", [2]string{"unix: {path: portvakt.sock}", "unix: {path: portvakt.sock, mode: \"0666\"}"}, "every user of the machine"},
		{"bad alg", [2]string{"key_label: eseal\n  - name: local", "key_label: eseal\n    grant_alg: HS256\n  - name: local"}, `grant_alg "HS256"`},
		{"bad key id", [2]string{"key_label: eseal\n  - name: local", "key_id: xyz\n  - name: local"}, `key_id "xyz" is not hex`},
		{"no endpoint", [2]string{"    token_endpoint: http://127.0.0.1:8089/token\n", ""}, "give a token_endpoint, or discovery: true"},
		{"no audit", [2]string{"audit: {file: audit/audit.log}\n", ""}, "does not run without an audit log"},
		{"two documents", [2]string{"policy: policy.yaml", "policy: policy.yaml\n---\nlisten: {}"}, "portvakt.yaml:24: a second YAML document"},
		{"bad duration", [2]string{"45s", "45 sekunder"}, `portvakt.yaml:25: cache.refresh_margin: "45 sekunder" is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { loadFails(t, validConfig, tt.replace, tt.want) })
	}
}

// loadFails loads base with replace[0] replaced by replace[1] and checks
// that the error says want.
func loadFails(t *testing.T, base string, replace [2]string, want string) {
	t.Helper()
	if !strings.Contains(base, replace[0]) {
		t.Fatalf("test is stale: %q not in the configuration", replace[0])
	}
	_, err := Load(writeConfig(t, strings.Replace(base, replace[0], replace[1], 1)))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load() error = %v\nwant it to say %q", err, want)
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	body := strings.NewReplacer("client_id: local-client", "client_id: \"\"", "preset: test", "preset: staging").Replace(validConfig)
	_, err := Load(writeConfig(t, body))
	if err == nil || !strings.Contains(err.Error(), "client_id") || !strings.Contains(err.Error(), "staging") {
		t.Fatalf("want both problems in one error, got %v", err)
	}
}

func TestEmptyConfig(t *testing.T) {
	if _, err := Load(writeConfig(t, "")); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty configuration: %v", err)
	}
}

// TestPINLiteralNeverEchoed: a PIN written into the configuration instead of
// {file: …} or {env: …} is refused with what to write instead, and the
// error never carries the PIN.
func TestPINLiteralNeverEchoed(t *testing.T) {
	const literal = "Lit-PIN-4711"
	const hsmsConfig = "hsms:\n  - {name: prod-hsm, token: prod, pin: {file: user.pin}}\n"
	base := strings.Replace(validConfig, "hsm:\n  token: portvakt\n  pin: {file: user.pin}\n", hsmsConfig, 1)
	tests := []struct {
		name    string
		base    string
		replace [2]string
		want    string
	}{
		{"quoted", validConfig, [2]string{"pin: {file: user.pin}", `pin: "` + literal + `"`}, "portvakt.yaml:11: hsm.pin: give the PIN as {file: PATH} or {env: VARIABLE}; a PIN is never written in the configuration"},
		{"plain", validConfig, [2]string{"pin: {file: user.pin}", "pin: " + literal}, "give the PIN as {file: PATH} or {env: VARIABLE}"},
		{"number", validConfig, [2]string{"pin: {file: user.pin}", "pin: 4711"}, "give the PIN as {file: PATH} or {env: VARIABLE}"},
		{"sequence", validConfig, [2]string{"pin: {file: user.pin}", "pin: [" + literal + "]"}, "give the PIN as {file: PATH} or {env: VARIABLE}"},
		{"unknown key", validConfig, [2]string{"pin: {file: user.pin}", "pin: {value: " + literal + "}"}, "unknown key: give the PIN as {file: PATH} or {env: VARIABLE}"},
		{"in hsms", base, [2]string{"pin: {file: user.pin}", "pin: " + literal}, "portvakt.yaml:10: hsms[0].pin: give the PIN as {file: PATH} or {env: VARIABLE}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(tt.base, tt.replace[0], tt.replace[1], 1)
			if body == tt.base {
				t.Fatalf("test is stale: %q not in the configuration", tt.replace[0])
			}
			path := writeConfig(t, body)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load() accepted a PIN written into the configuration")
			}
			// The file's path is the test's temporary directory, whose
			// random part may hold 4711 (it did, in CI): look past it.
			if msg := strings.ReplaceAll(err.Error(), path, "FILE"); strings.Contains(msg, literal) || strings.Contains(msg, "4711") {
				t.Fatalf("Load() error echoes the PIN: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load() error = %v\nwant it to say %q", err, tt.want)
			}
		})
	}
}
