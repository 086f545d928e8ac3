package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cliPolicy = `clients:
  - name: billing
    identities: [uid:1000, dns:billing.internal]
    rules:
      - environments: [test, prod]
        scopes: [svv:kjoretoy/ecoc]
      - environments: [test]
        scopes: [svv:kjoretoy/ecoc.delegert]
        consumer_orgs: ["974760673"]
  - name: reports
    identities: [gid:2000]
    rules:
      - environments: [prod]
        scopes: [svv:kjoretoy/leasingtaker]
      - environments: [prod]
        scopes: [svv:kjoretoy/forstegangsregistrering]
`

// runPolicy executes `portvakt policy ARGS` in-process.
func runPolicy(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newPolicyCommand()
	// As the root command does: main prints errors once, without usage.
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func writePolicy(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPolicyCheck(t *testing.T) {
	good := writePolicy(t, cliPolicy)
	out, _, err := runPolicy(t, "check", good)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if want := "ok: 2 clients, 4 rules, environments: prod, test\n"; out != want {
		t.Errorf("check printed %q, want %q", out, want)
	}

	bad := writePolicy(t, strings.NewReplacer(
		`["974760673"]`, `["974760674"]`,
		"uid:1000", "uid:x",
		"scopes: [svv:kjoretoy/leasingtaker]", "scopes: []",
	).Replace(cliPolicy))
	out, stderr, err := runPolicy(t, "check", bad)
	if err == nil {
		t.Fatalf("check of a bad policy succeeded: %s", out)
	}
	var usage usageError
	if errors.As(err, &usage) {
		t.Errorf("a bad policy is not a usage error: %v", err)
	}
	if !strings.Contains(err.Error(), "3 problems") {
		t.Errorf("error = %q, want the count", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	want := []string{bad + `:3: identity "uid:x"`, bad + `:9: consumer_orgs: invalid organisation number`, bad + ":14: scopes is empty"}
	if len(lines) != len(want) {
		t.Fatalf("check printed %d problems, want %d:\n%s", len(lines), len(want), stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want %q…", i, lines[i], w)
		}
	}

	// One problem is the error itself, with its position.
	one := writePolicy(t, strings.Replace(cliPolicy, "uid:1000", "uid:x", 1))
	if _, _, err := runPolicy(t, "check", one); err == nil || !strings.HasPrefix(err.Error(), one+":3: ") {
		t.Errorf("check with one problem = %v", err)
	}

	if _, _, err := runPolicy(t, "check"); !errors.As(err, &usage) {
		t.Errorf("check without a file = %v, want a usage error", err)
	}
	if _, _, err := runPolicy(t, "check", filepath.Join(t.TempDir(), "missing.yaml")); err == nil || errors.As(err, &usage) {
		t.Errorf("check of a missing file = %v", err)
	}
}

func TestPolicyExplain(t *testing.T) {
	file := writePolicy(t, cliPolicy)
	tests := []struct {
		name   string
		args   []string
		out    string
		denied bool
	}{
		{
			name: "allowed",
			args: []string{"--identity", "uid:1000", "--identity", "gid:2000", "--env", "prod", "--scope", "svv:kjoretoy/ecoc"},
			out:  "ALLOW  client billing (identity uid:1000) by rule " + file + ":5\n",
		},
		{
			name: "allowed on behalf of a consumer",
			args: []string{"--identity", "dns:billing.internal", "--env", "test", "--scope", "svv:kjoretoy/ecoc.delegert", "--consumer-org", "974760673"},
			out:  "ALLOW  client billing (identity dns:billing.internal) by rule " + file + ":7\n",
		},
		{
			name: "two scopes by two rules",
			args: []string{"--identity", "gid:2000", "--env", "prod", "--scope", "svv:kjoretoy/leasingtaker", "--scope", "svv:kjoretoy/forstegangsregistrering"},
			out:  "ALLOW  client reports (identity gid:2000) by rules " + file + ":13, " + file + ":15\n",
		},
		{
			name:   "own and delegated scopes in one request",
			args:   []string{"--identity", "uid:1000", "--env", "test", "--scope", "svv:kjoretoy/ecoc", "--scope", "svv:kjoretoy/ecoc.delegert", "--consumer-org", "974760673"},
			out:    "DENY   client \"billing\" has no rule allowing scope svv:kjoretoy/ecoc in environment test on behalf of 974760673; consumer_org is only for delegated (.delegert) scopes\n",
			denied: true,
		},
		{
			name:   "denied scope",
			args:   []string{"--identity", "gid:2000", "--env", "prod", "--scope", "svv:kjoretoy/ecoc"},
			out:    "DENY   client \"reports\" has no rule allowing scope svv:kjoretoy/ecoc in environment prod\n",
			denied: true,
		},
		{
			name:   "unknown caller",
			args:   []string{"--identity", "uid:1001", "--identity", "gid:1001", "--env", "prod", "--scope", "svv:kjoretoy/ecoc"},
			out:    "DENY   no client claims identity uid:1001 or gid:1001\n",
			denied: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runPolicy(t, append([]string{"explain", "--policy", file}, tt.args...)...)
			if out != tt.out {
				t.Errorf("explain printed %q\nwant %q", out, tt.out)
			}
			var d denied
			if tt.denied != errors.As(err, &d) || !tt.denied && err != nil {
				t.Fatalf("explain returned %v, want denied: %v", err, tt.denied)
			}
			if tt.denied && !strings.Contains(tt.out, d.reason) {
				t.Errorf("denied{%q} is not the printed reason", d.reason)
			}
		})
	}
}

func TestPolicyExplainUsage(t *testing.T) {
	file := writePolicy(t, cliPolicy)
	base := []string{"explain", "--policy", file, "--identity", "uid:1000", "--scope", "svv:kjoretoy/ecoc", "--env", "prod"}
	for _, drop := range []string{"--policy", "--identity", "--scope", "--env"} {
		var args []string
		for i := 0; i < len(base); i++ {
			if base[i] == drop {
				i++
				continue
			}
			args = append(args, base[i])
		}
		_, _, err := runPolicy(t, args...)
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), drop) {
			t.Errorf("explain without %s = %v, want a usage error naming it", drop, err)
		}
	}
	bad := writePolicy(t, "clients: []\n")
	_, _, err := runPolicy(t, "explain", "--policy", bad, "--identity", "uid:1000", "--scope", "svv:kjoretoy/ecoc", "--env", "prod")
	var d denied
	if err == nil || errors.As(err, &d) || !strings.Contains(err.Error(), "no clients") {
		t.Errorf("explain with an invalid policy = %v, want the policy's problem", err)
	}
}
