// Package demotest runs `make demo`'s script end to end and searches what
// it leaves behind for secrets.
package demotest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// jws matches any compact JWS (a grant or an access token): none may be
// written to a log or the audit.
var jws = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}`)

// TestDemoLeaksNoSecret runs the demo, then searches the daemon's and the
// simulator's logs, the audit log and every error the demo printed for
// the PINs, the access tokens the demo received and any grant or token.
func TestDemoLeaksNoSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes a while; run without -short")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", bin+"/", root+"/cmd/...").CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	state := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"), state)
	cmd.Env = append(os.Environ(), "BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the demo failed: %v\n%s", err, out)
	}

	// What the demo printed on purpose: the tokens `portvakt token` shows.
	var tokens []string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "access_token: "); ok {
			tokens = append(tokens, v)
		}
	}
	if len(tokens) != 3 {
		t.Fatalf("the demo printed %d tokens, want the consumer's, the delegated one and the system user's:\n%s", len(tokens), out)
	}
	secrets := map[string]string{}
	for _, f := range []string{"user.pin", "so.pin"} {
		pin, err := os.ReadFile(filepath.Join(state, f))
		if err != nil {
			t.Fatal(err)
		}
		secrets[f] = strings.TrimSpace(string(pin))
	}
	for i, tok := range tokens {
		secrets["token "+string(rune('1'+i))] = tok
	}

	// Where secrets must not be: logs, the audit, and the errors printed.
	places := map[string]string{}
	for _, f := range []string{"portvakt.log", "maskinporten-sim.log", "maskinporten-sim.out"} {
		data, err := os.ReadFile(filepath.Join(state, f))
		if err != nil {
			t.Fatal(err)
		}
		places[f] = string(data)
	}
	audits, _ := filepath.Glob(filepath.Join(state, "audit", "*.log"))
	if len(audits) == 0 {
		t.Fatal("the demo wrote no audit log")
	}
	for _, f := range audits {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		places["audit "+filepath.Base(f)] = string(data)
	}
	var errorLines []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "portvakt:") || strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			errorLines = append(errorLines, line)
		}
	}
	if len(errorLines) == 0 {
		t.Fatal("the demo printed no error; the denied request should have")
	}
	places["errors"] = strings.Join(errorLines, "\n")

	for place, text := range places {
		for name, secret := range secrets {
			if len(secret) < 8 {
				t.Fatalf("%s is too short to search for", name)
			}
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %s", name, place)
			}
		}
		if m := jws.FindString(text); m != "" {
			t.Errorf("a JWS (a grant or a token) appears in %s: %.40s…", place, m)
		}
	}
	if !strings.Contains(places["portvakt.log"], "request_id=") || !strings.Contains(places["audit audit.log"], `"kind":"signature"`) {
		t.Errorf("the logs and the audit are not what the search assumed; it would pass vacuously")
	}
}
