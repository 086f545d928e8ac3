package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// runCLI runs one command line in-process as main does, and returns what
// it printed on each stream and the exit status main would give.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errOut strings.Builder
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	status = report(&errOut, root.Execute())
	return out.String(), errOut.String(), status
}

// startDaemon serves a real daemon in this process, in front of the
// simulator, on a Unix socket whose path it returns. Its policy lets this
// process's uid ask for mptest.ScopeOwn in environment sim, and
// mptest.ScopeNotGranted (which Maskinporten refuses), and nothing else.
func startDaemon(t *testing.T) string {
	socket, _ := startDaemonWorld(t)
	return socket
}

func startDaemonWorld(t *testing.T) (string, *mptest.World) {
	t.Helper()
	if softhsmtest.Implementation() == softhsmtest.SoftHSM2 {
		// The hsm tests' --softhsm-dir points SOFTHSM2_CONF at their own
		// directory, gone by now: back to the test binary's.
		t.Setenv("SOFTHSM2_CONF", softhsmtest.Dir().ConfigFile())
	}
	w := mptest.New(t, mptest.Options{NoSigner: true}) // the daemon is the module's only user
	dir, err := os.MkdirTemp("", "pv")                 // a socket path must be short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	files := map[string]string{
		"policy.yaml": fmt.Sprintf("clients:\n  - name: billing\n    identities: [\"uid:%d\"]\n    rules:\n      - {environments: [sim], scopes: [%s, %s]}\n      - {environments: [sim], scopes: [%s, %s]}\n",
			os.Getuid(), mptest.ScopeOwn, mptest.ScopeNotGranted, mpsim.ScopeDCRRead, mpsim.ScopeDCRModify),
		"portvakt.yaml": fmt.Sprintf(`listen:
  unix: {path: portvakt.sock}
hsm: {module: %q, token: %q, pin: {env: PORTVAKT_CLI_TEST_PIN}}
environments:
  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal, self_service: {url: %q}}
policy: policy.yaml
audit: {file: audit/audit.log}
`, w.Token.Module, w.Token.Label, w.Issuer, w.Endpoint, mptest.ClientID, w.Issuer+mpsim.SelfServicePath),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PORTVAKT_CLI_TEST_PIN", w.Token.PIN.Reveal())
	cfg, err := loadConfig(filepath.Join(dir, "portvakt.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the daemon: %v", err)
		}
	})
	return d.Addresses()["unix"], w
}

// TestTokenExitStatus: `portvakt token` tells a denial by the policy (3),
// a daemon not there (69) and a mistake in the command line (2) apart,
// and says each in a sentence without gRPC's transport text.
func TestTokenExitStatus(t *testing.T) {
	socket := startDaemon(t)
	gone := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		name   string
		args   []string
		status int
		want   []string // in the message on stderr
	}{
		{"allowed", []string{"--socket", socket, "--env", "sim", "--scope", mptest.ScopeOwn, "--raw"}, exitOK, nil},
		{"denied by the policy", []string{"--socket", socket, "--env", "sim", "--scope", mptest.ScopeElsewhere}, exitDenied,
			[]string{"the daemon refused the request: denied by policy", mptest.ScopeElsewhere}},
		{"refused by Maskinporten", []string{"--socket", socket, "--env", "sim", "--scope", mptest.ScopeNotGranted}, exitFailure,
			[]string{"Maskinporten refused the grant", "invalid_scope", "400", "MP-200", "trace_id"}},
		{"an environment the daemon does not serve", []string{"--socket", socket, "--env", "nowhere", "--scope", mptest.ScopeOwn}, exitUsage,
			[]string{"the daemon found the request invalid", `unknown environment "nowhere"`, "serves sim"}},
		{"the daemon not there", []string{"--socket", gone, "--env", "sim", "--scope", mptest.ScopeOwn}, exitUnavailable,
			[]string{"cannot reach portvakt at unix socket " + gone, "no such file", "portvakt serve", "--socket", "PORTVAKT_SOCKET"}},
		{"an unknown flag", []string{"--socket", socket, "--scope", mptest.ScopeOwn, "--no-such-flag"}, exitUsage, []string{"unknown flag"}},
		{"a negative --min-validity", []string{"--socket", socket, "--scope", mptest.ScopeOwn, "--min-validity", "-1m"}, exitUsage, []string{"--min-validity"}},
		{"a consumer that is no organisation number", []string{"--socket", socket, "--scope", mptest.ScopeOwn, "--consumer-org", "12345"}, exitUsage, []string{"--consumer-org"}},
		{"no scope", []string{"--socket", socket}, exitUsage, []string{"--scope is required"}},
		{"two formats", []string{"--socket", socket, "--scope", mptest.ScopeOwn, "--json", "--raw"}, exitUsage, []string{"--json or --raw"}},
		{"JSON", []string{"--socket", socket, "--env", "sim", "--scope", mptest.ScopeOwn, "--json"}, exitOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, status := runCLI(t, append([]string{"token"}, tt.args...)...)
			if status != tt.status {
				t.Fatalf("exit status %d, want %d\nstderr: %s", status, tt.status, stderr)
			}
			switch {
			case tt.status != exitOK:
			case slices.Contains(tt.args, "--json"):
				doc := decodeOne(t, stdout)
				if tok, _ := doc["access_token"].(string); !strings.HasPrefix(tok, "eyJ") || doc["token_type"] != "Bearer" || doc["claims"] == nil || doc["expires_at"] == nil {
					t.Errorf("--json printed %v", doc)
				}
			case !strings.HasPrefix(stdout, "eyJ"):
				t.Errorf("--raw printed %q, want the access token", stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
			for _, raw := range []string{"transport:", "desc =", "rpc error"} {
				if strings.Contains(stderr, raw) {
					t.Errorf("stderr %q holds gRPC's own text %q", stderr, raw)
				}
			}
		})
	}
}

// TestTokenMaskinportenDown: with Maskinporten away, the daemon answers
// UNAVAILABLE with when to come back, and the command says so with exit
// status 69.
func TestTokenMaskinportenDown(t *testing.T) {
	socket, w := startDaemonWorld(t)
	w.Down(t)
	defer w.Up(t)
	_, stderr, status := runCLI(t, "token", "--socket", socket, "--env", "sim", "--scope", mptest.ScopeOwn, "--timeout", "3s")
	if status != exitUnavailable {
		t.Errorf("exit status %d, want 69 (stderr %q)", status, stderr)
	}
	if !strings.Contains(stderr, "the daemon could not issue a token now: Maskinporten is unavailable") || !strings.Contains(stderr, "; try again in ") {
		t.Errorf("stderr %q does not say that Maskinporten is away and when to try again", stderr)
	}
}

// TestTokenUsesPortvaktSocket: with no --socket or --addr, the command
// looks for the daemon where $PORTVAKT_SOCKET says, and says so when it is
// not there.
func TestTokenUsesPortvaktSocket(t *testing.T) {
	socket := startDaemon(t)
	t.Setenv("PORTVAKT_SOCKET", socket)
	if stdout, stderr, status := runCLI(t, "token", "--env", "sim", "--scope", mptest.ScopeOwn, "--raw"); status != exitOK || !strings.HasPrefix(stdout, "eyJ") {
		t.Fatalf("token via $PORTVAKT_SOCKET: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	gone := filepath.Join(t.TempDir(), "none.sock")
	t.Setenv("PORTVAKT_SOCKET", gone)
	if _, stderr, status := runCLI(t, "token", "--env", "sim", "--scope", mptest.ScopeOwn); status != exitUnavailable || !strings.Contains(stderr, gone) {
		t.Fatalf("token via $PORTVAKT_SOCKET to nothing: status %d, stderr %q; want 69 naming %s", status, stderr, gone)
	}
}

// TestDialUsesPortvaktSocket: client.Dial with Options that name no socket
// and no address reaches the daemon at $PORTVAKT_SOCKET.
func TestDialUsesPortvaktSocket(t *testing.T) {
	socket := startDaemon(t)
	t.Setenv("PORTVAKT_SOCKET", socket)
	c, err := client.Dial(client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok, err := c.Token(t.Context(), client.Request{Environment: "sim", Scopes: []string{mptest.ScopeOwn}})
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("Token through $PORTVAKT_SOCKET: %v, %v", tok, err)
	}

	t.Setenv("PORTVAKT_SOCKET", "")
	if _, err := client.Dial(client.Options{}); err == nil || !strings.Contains(err.Error(), "PORTVAKT_SOCKET") {
		t.Fatalf("Dial with nothing to dial = %v, want an error naming PORTVAKT_SOCKET", err)
	}
}

// TestHSMCheckWrongPIN: a PIN the token refuses is said in a sentence that
// names the token and where the PIN was read from, without the library's
// raw "pkcs11: 0xA0: ..." and without the PIN.
func TestHSMCheckWrongPIN(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	tr := &transcript{}
	sel := commandToken(t, tr, file)
	tr.must(t, append(append([]string{"hsm", "keygen"}, sel...), "--pin-file", file("user.pin"), "--label", "eseal", "--bits", "2048")...)
	wrongPIN := "Wrong-" + rand.Text()[:12]
	if err := os.WriteFile(file("wrong.pin"), []byte(wrongPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	label := sel[len(sel)-1] // the flags end --token LABEL
	_, stderr, status := runCLI(t, append(append([]string{"hsm", "check"}, sel...), "--pin-file", file("wrong.pin"), "--label", "eseal")...)
	if status != exitFailure {
		t.Errorf("exit status %d, want %d", status, exitFailure)
	}
	for _, want := range []string{fmt.Sprintf("token %q refused the PIN", label), "--pin-file " + file("wrong.pin"), "CKR_PIN_INCORRECT"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not say %q", stderr, want)
		}
	}
	userPIN, _ := os.ReadFile(file("user.pin"))
	for _, bad := range []string{"0xA0", "pkcs11:", wrongPIN, strings.TrimSpace(string(userPIN))} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr %q holds %q", stderr, bad)
		}
	}
}

// TestJSONOutput: every command that prints a result prints one JSON
// document with --json, with the fields docs/cli.md lists, and the exit
// status it has without --json.
func TestJSONOutput(t *testing.T) {
	policyFile := writePolicy(t, systemUserCLIPolicy)
	badPolicy := writePolicy(t, "clients:\n  - name: billing\n    identities: [uid:1000]\n    rules:\n      - {environments: [prod], scopes: [svv:kjoretoy/ecoc], nonsense: 1}\n")
	log := auditLog(t)
	explain := []string{"policy", "explain", "--json", "--policy", policyFile, "--identity", "uid:1000", "--env", "prod"}
	tests := []struct {
		name   string
		args   []string
		status int
		check  func(t *testing.T, doc map[string]any)
	}{
		{"policy check", []string{"policy", "check", "--json", policyFile}, exitOK, func(t *testing.T, doc map[string]any) {
			want(t, doc, "ok", true)
			want(t, doc, "clients", 1.0)
			want(t, doc, "rules", 2.0)
		}},
		{"policy check of a bad file", []string{"policy", "check", "--json", badPolicy}, exitFailure, func(t *testing.T, doc map[string]any) {
			want(t, doc, "ok", false)
			problems, _ := doc["problems"].([]any)
			if len(problems) == 0 {
				t.Fatalf("no problems in %v", doc)
			}
			p := problems[0].(map[string]any)
			if p["file"] != badPolicy || p["line"] == nil || !strings.Contains(p["message"].(string), "nonsense") {
				t.Errorf("problem %v: want the file, the line and the unknown field", p)
			}
		}},
		{"policy explain ALLOW", append(explain, "--scope", "svv:kjoretoy/ecoc"), exitOK, func(t *testing.T, doc map[string]any) {
			want(t, doc, "decision", "ALLOW")
			want(t, doc, "allowed", true)
			want(t, doc, "client", "billing")
			want(t, doc, "identity", "uid:1000")
			if rules, _ := doc["rules"].([]any); len(rules) != 1 || rules[0] != policyFile+":5" {
				t.Errorf("rules = %v, want [%s:5]", doc["rules"], policyFile)
			}
		}},
		{"policy explain DENY", append(explain, "--scope", "svv:kjoretoy/other"), exitDenied, func(t *testing.T, doc map[string]any) {
			want(t, doc, "decision", "DENY")
			want(t, doc, "allowed", false)
			if r, _ := doc["reason"].(string); !strings.Contains(r, "svv:kjoretoy/other") {
				t.Errorf("reason %q does not name the scope", r)
			}
		}},
		{"audit verify", []string{"audit", "verify", "--json", filepath.Dir(log)}, exitOK, func(t *testing.T, doc map[string]any) {
			want(t, doc, "verdict", "ok")
			instances, _ := doc["instances"].([]any)
			if len(instances) != 1 {
				t.Fatalf("instances = %v, want one", doc["instances"])
			}
			in := instances[0].(map[string]any)
			want(t, in, "verdict", "ok")
			want(t, in, "records", 4.0)
			want(t, in, "first_seq", 1.0)
			want(t, in, "last_seq", 4.0)
			if h, _ := in["last_hash"].(string); len(h) != 64 {
				t.Errorf("last_hash %q is not a SHA-256", h)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, status := runCLI(t, tt.args...)
			if status != tt.status {
				t.Errorf("exit status %d, want %d (stderr %q)", status, tt.status, stderr)
			}
			tt.check(t, decodeOne(t, stdout))
		})
	}
}

// TestAuditVerifyJSONBrokenLog: a chain that does not hold is verdict
// failed, with the problem's file and line, and exit status 1.
func TestAuditVerifyJSONBrokenLog(t *testing.T) {
	log := auditLog(t)
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, []byte(strings.Replace(string(data), `"billing"`, `"mallory"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status := runCLI(t, "audit", "verify", "--json", log)
	if status != exitFailure {
		t.Errorf("exit status %d, want 1 (stderr %q)", status, stderr)
	}
	doc := decodeOne(t, stdout)
	want(t, doc, "verdict", "failed")
	in := doc["instances"].([]any)[0].(map[string]any)
	p, _ := in["problem"].(map[string]any)
	if p == nil || p["file"] != log || p["line"] == nil {
		t.Fatalf("problem = %v, want the file and line", in["problem"])
	}
}

// TestHSMJSON: the hsm commands' --json on a real token.
func TestHSMJSON(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	tr := &transcript{}
	tok := append(commandToken(t, tr, file), "--pin-file", file("user.pin"))
	hsmCmd := func(sub string, extra ...string) []string {
		return append(append([]string{"hsm", sub}, tok...), extra...)
	}
	keygen := decodeOne(t, tr.must(t, hsmCmd("keygen", "--label", "eseal", "--bits", "2048", "--json")...))
	if key, _ := keygen["key"].(map[string]any); key == nil || key["label"] != "eseal" || key["bits"] != 2048.0 || key["sensitive"] != true || key["extractable"] != false {
		t.Errorf("keygen --json = %v", keygen)
	}
	tr.must(t, hsmCmd("csr", "--label", "eseal", "--org-number", "991825827", "--organization", "CLI Test AS", "--out", file("eseal.csr"))...)
	tr.must(t, "devca", "init", "--dir", file("ca"))
	tr.must(t, "devca", "issue", "--dir", file("ca"), "--csr", file("eseal.csr"), "--out", file("chain.pem"))
	imported := decodeOne(t, tr.must(t, hsmCmd("import-cert", "--label", "eseal", "--cert", file("chain.pem"), "--json")...))
	want(t, imported, "certificates_stored", 3.0)
	want(t, imported, "already_on_token", 0.0)

	stdout, stderr, status := runCLI(t, hsmCmd("check", "--label", "eseal", "--json")...)
	if status != exitOK {
		t.Fatalf("exit status %d: %s", status, stderr)
	}
	var doc struct {
		OK  bool `json:"ok"`
		Key struct {
			Label string `json:"label"`
			Bits  int    `json:"bits"`
		} `json:"key"`
		Certificate struct {
			OrgNumber string `json:"org_number"`
			SHA256    string `json:"sha256"`
		} `json:"certificate"`
		Issuers    []string `json:"issuers"`
		Signatures []struct {
			Algorithm string `json:"algorithm"`
			Verified  bool   `json:"verified"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if !doc.OK || doc.Key.Label != "eseal" || doc.Key.Bits != 2048 || doc.Certificate.OrgNumber != "991825827" ||
		len(doc.Certificate.SHA256) != 64 || len(doc.Issuers) != 2 || len(doc.Signatures) != 3 {
		t.Fatalf("hsm check --json = %+v", doc)
	}
	for _, s := range doc.Signatures {
		if !s.Verified {
			t.Errorf("%s not verified", s.Algorithm)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	stdout, _, status := runCLI(t, "version", "--json")
	doc := decodeOne(t, stdout)
	if status != exitOK || doc["version"] == "" || !strings.HasPrefix(doc["go_version"].(string), "go") {
		t.Fatalf("version --json = %v, status %d", doc, status)
	}
}

// TestUsageExitStatus: values no command can use are refused with exit
// status 2 and a message that says what is valid.
func TestUsageExitStatus(t *testing.T) {
	log := auditLog(t)
	csr := filepath.Join(t.TempDir(), "x.csr")
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"audit", "query", "--kind", "bogus", log}, append([]string{`--kind "bogus"`}, auditKinds.values...)},
		{[]string{"devca", "issue", "--dir", t.TempDir(), "--csr", csr, "--days", "-1"}, []string{"--days -1", "1 to 3650"}},
		{[]string{"devca", "issue", "--dir", t.TempDir(), "--csr", csr, "--days", "0"}, []string{"--days 0"}},
		{[]string{"hsm", "keygen", "--token", "x", "--label", "k", "--bits", "1024"}, []string{`--bits "1024"`, "2048", "3072"}},
		{[]string{"policy", "explain", "--policy", "p.yaml", "--identity", "uid:1", "--env", "prod", "--scope", "s", "--consumer-org", "1"}, []string{"--consumer-org"}},
		{[]string{"token", "--scope", "s", "--timeout", "0s"}, []string{"--timeout"}},
		{[]string{"hsm", "bogus"}, []string{`unknown command "bogus" for "portvakt hsm"`}},
		{[]string{"bogus"}, []string{`unknown command "bogus" for "portvakt"`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, status := runCLI(t, tt.args...)
			if status != exitUsage {
				t.Errorf("exit status %d, want 2 (stderr %q)", status, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
		})
	}
}

// TestCompletion: the completion scripts are made for each shell, and the
// values of an enum flag are completed.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		stdout, stderr, status := runCLI(t, "completion", shell)
		if status != exitOK || !strings.Contains(stdout, "portvakt") {
			t.Errorf("completion %s: status %d, %d bytes, stderr %q", shell, status, len(stdout), stderr)
		}
	}
	stdout, _, _ := runCLI(t, "__complete", "audit", "query", "--kind", "")
	for _, kind := range auditKinds.values {
		if !strings.Contains(stdout, kind+"\n") {
			t.Errorf("--kind completion %q lacks %s", stdout, kind)
		}
	}
}

func decodeOne(t *testing.T, stdout string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document:\n%s", stdout)
	}
	return doc
}

func want(t *testing.T, doc map[string]any, field string, value any) {
	t.Helper()
	if doc[field] != value {
		t.Errorf("%s = %v (%T), want %v", field, doc[field], doc[field], value)
	}
}

// TestExitStatusesDocumented: docs/cli.md's table of exit statuses is the
// one in exitcode.go, row by row.
func TestExitStatusesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	_, table, _ := strings.Cut(string(doc), "| Status | Meaning |")
	for _, line := range strings.Split(table, "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		rows = append(rows, line)
	}
	if len(rows) != len(exitStatuses) {
		t.Fatalf("docs/cli.md has %d exit statuses, exitcode.go %d", len(rows), len(exitStatuses))
	}
	for i, s := range exitStatuses {
		cells := strings.Split(rows[i], "|")
		if strings.TrimSpace(cells[1]) != fmt.Sprint(s.code) || !strings.HasPrefix(strings.TrimSpace(cells[2]), s.meaning) {
			t.Errorf("docs/cli.md row %q, want %d %q", rows[i], s.code, s.meaning)
		}
	}
}
