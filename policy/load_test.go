package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/orgno"
)

// TestLoadBadFixtures: each fixture in testdata/bad has one mistake, which
// must be reported alone, at its line, with what to do.
func TestLoadBadFixtures(t *testing.T) {
	tests := []struct {
		file   string
		line   int
		phrase string
	}{
		{"unknown-key.yaml", 4, `unknown key "description" in a client; the keys are name, identities, rules, rate_limit`},
		{"missing-name.yaml", 2, "a client has no name"},
		{"missing-identities.yaml", 2, `client "billing" has no identities`},
		{"missing-rules.yaml", 2, `client "billing" has no rules`},
		{"duplicate-name.yaml", 7, `client name "billing" is used twice (first at line 2)`},
		{"identity-twice.yaml", 10, `identity uid:1000 is claimed by client "reports" and by client "billing" (line 4)`},
		{"identity-malformed.yaml", 4, `identity "uid=1000": write a URI with a scheme`},
		{"identity-uid-not-number.yaml", 4, `identity "uid:billing": uid: must be followed by a decimal number`},
		{"identity-space.yaml", 4, `write uid:1000 without the space`},
		{"scope-malformed.yaml", 6, `scope "kjoretoy/ecoc": a Maskinporten scope is prefix:name`},
		{"orgno-invalid.yaml", 7, `consumer_orgs: invalid organisation number "974760674": check digit is 4, want 3`},
		{"environments-empty.yaml", 5, "environments is empty"},
		{"environment-name.yaml", 5, `environment "Prod": environments are the daemon's environment names`},
		{"scopes-empty.yaml", 6, "scopes is empty"},
		{"orgs-without-delegated.yaml", 6, "scope svv:kjoretoy/ecoc is not delegated, but the rule has consumer_orgs"},
		{"rate-limit-zero.yaml", 9, "rate_limit burst must be a whole number > 0"},
		{"rate-limit-negative.yaml", 7, "rate_limit per_second must be a number > 0"},
		{"empty.yaml", 1, "the policy has no clients; every request would be denied"},
		{"no-clients.yaml", 2, "the policy has no clients; every request would be denied"},
		{"syntax.yaml", 3, "not valid YAML: did not find expected ',' or ']'"},
		{"alias.yaml", 11, "YAML aliases (*prod) are not supported"},
		{"two-documents.yaml", 7, "a second YAML document"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			p, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) succeeded: %v", path, p.Clients())
			}
			probs := Problems(err)
			if len(probs) != 1 {
				t.Fatalf("%d problems, want 1:\n%v", len(probs), err)
			}
			var prob *Problem
			if !errors.As(probs[0], &prob) || prob.File != path || prob.Line != tt.line {
				t.Errorf("problem %q is not a *Problem at %s:%d", probs[0], path, tt.line)
			}
			want := path + ":" + strconv.Itoa(tt.line) + ": "
			if got := err.Error(); !strings.HasPrefix(got, want) || !strings.Contains(got, tt.phrase) {
				t.Errorf("error %q\nwant %q…%q", got, want, tt.phrase)
			}
		})
	}
	// Every fixture is tested.
	entries, err := os.ReadDir(filepath.Join("testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("testdata/bad/%s has no test", e.Name())
		}
	}
}

// TestParseReportsEverything: one run lists every problem, in the order of
// the file, and keeps the errors it wraps.
func TestParseReportsEverything(t *testing.T) {
	const policy = `clients:
  - name: Billing
    identities: [uid:1000, ui:1000]
    rules:
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        consumer_orgs: ["123456789"]
        scope: [svv:kjoretoy/ecoc]
    rate_limit: {per_second: .inf}
  - name: reports
    identities: [uid:1000, dns:*.internal, dns:Reports.internal, spiffe://, https://reports.internal]
    rules: []
`
	_, err := Parse("p.yaml", []byte(policy))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := []string{
		`p.yaml:2: client name "Billing": use lower-case letters`,
		`p.yaml:3: identity "ui:1000": write a URI`,
		`p.yaml:6: scope svv:kjoretoy/ecoc is not delegated, but the rule has consumer_orgs`,
		`p.yaml:7: consumer_orgs: invalid organisation number "123456789"`,
		`p.yaml:8: unknown key "scope" in a rule; did you mean "scopes"?`,
		`p.yaml:9: rate_limit per_second must be a number > 0`,
		`p.yaml:9: rate_limit has no burst`,
		`p.yaml:11: identity uid:1000 is claimed by client "reports" and by the client at line 2 (line 3)`,
		`p.yaml:11: identity "dns:*.internal": a wildcard is not an identity`,
		`p.yaml:11: identity "dns:Reports.internal": write the DNS name in lower case (dns:reports.internal)`,
		`p.yaml:11: identity "spiffe://": the URI has no host`,
		`p.yaml:12: rules is empty`,
	}
	probs := Problems(err)
	if len(probs) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(probs), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(probs[i].Error(), w) {
			t.Errorf("problem %d = %q\nwant %q…", i, probs[i], w)
		}
	}
	if !errors.Is(err, orgno.ErrInvalid) {
		t.Errorf("the error does not wrap orgno.ErrInvalid")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want ErrNotExist", err)
	}
}

// TestParseAcceptedForms: what the policy accepts besides good.yaml's
// forms, so a tightening of the checks is a decision, not an accident.
func TestParseAcceptedForms(t *testing.T) {
	const policy = `clients:
  - name: a-1
    identities:
      - https://billing.internal/client
      - cn:Billing Service AS
      - gid:0
      - uid:4294967295
    rules:
      - environments: [test, local-sim]
        scopes: [svv:kjoretoy/leasingtaker.delegert]
        consumer_orgs: [974760673, "991825827"]
    rate_limit: {per_second: 0.5, burst: 1}
`
	p, err := Parse("p.yaml", []byte(policy))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	d := p.Decide(Request{Identities: []string{"cn:Billing Service AS"}, Environment: "local-sim",
		Scopes: []string{"svv:kjoretoy/leasingtaker.delegert"}, ConsumerOrg: "991825827"})
	if !d.Allowed {
		t.Errorf("Decide: %s", d.Reason)
	}
}

func TestRateLimitValues(t *testing.T) {
	tests := []struct {
		limit string
		want  string // "" when valid
	}{
		{"{per_second: 5, burst: 10}", ""},
		{"{per_second: 0.25, burst: 1}", ""},
		{"{per_second: 0, burst: 10}", "per_second must be a number > 0"},
		{"{per_second: .inf, burst: 10}", "per_second must be a number > 0"},
		{"{per_second: .nan, burst: 10}", "per_second must be a number > 0"},
		{`{per_second: "5", burst: 10}`, `not the quoted text "5"`},
		{"{per_second: 5, burst: 1.5}", "burst must be a whole number > 0"},
		{"{per_second: 5, burst: -3}", "burst must be a whole number > 0"},
		{"{per_second: 5}", "rate_limit has no burst"},
		{"{burst: 5}", "rate_limit has no per_second"},
		{"{per_second: 5, burst: 10, window: 60}", `unknown key "window" in rate_limit`},
		{"5", "rate_limit must be a mapping"},
		{"", "rate_limit must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.limit, func(t *testing.T) {
			policy := strings.Replace(policyFor(scopeA, ""), "{per_second: 0.001, burst: 2}", tt.limit, 1)
			_, err := Parse("p.yaml", []byte(policy))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("rate_limit: %s refused: %v", tt.limit, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "p.yaml:7: ") || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("rate_limit: %s = %v, want p.yaml:7: …%s", tt.limit, err, tt.want)
			}
		})
	}
}
