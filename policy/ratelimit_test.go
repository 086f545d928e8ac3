package policy

import (
	"fmt"
	"strings"
	"testing"
)

// The limits in these tests refill one token in 1000 s (per_second:
// 0.001), so no test depends on how fast it runs.

func TestAllowBurst(t *testing.T) {
	p, err := Parse("p.yaml", []byte(policyFor(scopeA, "")))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if !p.Allow("billing") {
			t.Fatalf("request %d of a burst of 2 refused", i+1)
		}
	}
	if p.Allow("billing") {
		t.Fatal("the third request of a burst of 2 allowed")
	}
	if !p.Allow("nobody") {
		t.Error("Allow(unknown client) = false; Admit is what limits callers no client claims")
	}
	good := loadGood(t)
	for range 100 {
		if !good.Allow("reports") {
			t.Fatal("a client without rate_limit was limited")
		}
	}
}

const otherClient = `  - name: reports
    identities: [uid:2000]
    rules:
      - environments: [prod]
        scopes: [svv:kjoretoy/leasingtaker]
`

func TestLimiterSurvivesReload(t *testing.T) {
	s, path, _ := newTestStore(t, policyFor(scopeA, ""))
	s.Current().Allow("billing")
	s.Current().Allow("billing")
	if s.Current().Allow("billing") {
		t.Fatal("burst of 2 not exhausted")
	}

	// Another client added and billing's rules changed: billing's rate
	// limit did not, so its bucket stays empty.
	writeFile(t, path, policyFor(scopeB, otherClient))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if !allows(s.Current(), scopeB) {
		t.Fatal("the reload did not apply")
	}
	if s.Current().Allow("billing") {
		t.Error("a reload refilled the bucket of a client whose limit did not change")
	}
	if !s.Current().Allow("reports") {
		t.Error("a client without a limit was limited")
	}

	// A changed limit starts a bucket of the new size.
	content := policyFor(scopeB, otherClient)
	writeFile(t, path, replaceOnce(t, content, "burst: 2", "burst: 3"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if !s.Current().Allow("billing") {
			t.Fatalf("request %d of the new burst of 3 refused", i+1)
		}
	}
	if s.Current().Allow("billing") {
		t.Error("the fourth request of a burst of 3 allowed")
	}

	// A failed reload changes nothing either.
	writeFile(t, path, "clients: [")
	if s.Reload() == nil {
		t.Fatal("broken reload accepted")
	}
	if s.Current().Allow("billing") {
		t.Error("a failed reload refilled the bucket")
	}
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q not in %q", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// TestAdmit: every caller is limited before anything is done for its call:
// a client by its own bucket, and every caller no client claims by one
// bucket they share, whether the policy sets its size or not.
func TestAdmit(t *testing.T) {
	const unknownCallers = "unknown_callers:\n  rate_limit: {per_second: 0.001, burst: 3}\n"
	tests := []struct {
		name       string
		policy     string
		identities [][]string // one call each, in turn
		want       []bool
		client     string // Admit's client for the first call
	}{
		{"a client, by its burst of 2", policyFor(scopeA, ""),
			[][]string{{"uid:1000"}, {"uid:1000", "gid:5"}, {"uid:1000"}}, []bool{true, true, false}, "billing"},
		{"a client without a rate_limit is not limited", policyFor(scopeA, otherClient),
			[][]string{{"uid:2000"}, {"uid:2000"}, {"uid:2000"}, {"uid:2000"}}, []bool{true, true, true, true}, "reports"},
		{"callers no client claims share the default bucket", policyFor(scopeA, ""),
			repeat([]string{"uid:7", "gid:7"}, DefaultUnknownRateLimit.Burst+1), burst(DefaultUnknownRateLimit.Burst), ""},
		{"and one bucket, whoever they are", policyFor(scopeA, unknownCallers),
			[][]string{{"uid:7"}, {"uid:8"}, {"spiffe://x.test/a"}, {"uid:9"}}, []bool{true, true, true, false}, ""},
		{"an unknown caller does not use up a client's bucket", policyFor(scopeA, unknownCallers),
			[][]string{{"uid:7"}, {"uid:7"}, {"uid:7"}, {"uid:7"}, {"uid:1000"}}, []bool{true, true, true, false, true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.policy))
			if err != nil {
				t.Fatal(err)
			}
			for i, ids := range tt.identities {
				client, ok := p.Admit(ids)
				if ok != tt.want[i] {
					t.Fatalf("call %d by %q: Admit = %v, want %v", i+1, ids, ok, tt.want[i])
				}
				if i == 0 && client != tt.client {
					t.Fatalf("Admit's client = %q, want %q", client, tt.client)
				}
			}
		})
	}
}

func repeat(ids []string, n int) [][]string {
	calls := make([][]string, n)
	for i := range calls {
		calls[i] = ids
	}
	return calls
}

// burst is n calls allowed, then one refused.
func burst(n int) []bool {
	want := make([]bool, n+1)
	for i := range n {
		want[i] = true
	}
	return want
}

// TestUnknownCallersBucketSurvivesReload: as a client's, the shared bucket
// is kept by a reload that leaves its limit as it was, and replaced by one
// that changes it.
func TestUnknownCallersBucketSurvivesReload(t *testing.T) {
	limited := func(burst int) string {
		return policyFor(scopeA, fmt.Sprintf("unknown_callers: {rate_limit: {per_second: 0.001, burst: %d}}\n", burst))
	}
	s, path, _ := newTestStore(t, limited(1))
	stranger := []string{"uid:7"}
	if _, ok := s.Current().Admit(stranger); !ok {
		t.Fatal("the first call of a burst of 1 refused")
	}
	writeFile(t, path, strings.Replace(limited(1), scopeA, scopeB, 1))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Current().Admit(stranger); ok {
		t.Fatal("a reload that left unknown_callers alone refilled their bucket")
	}
	writeFile(t, path, limited(2))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Current().Admit(stranger); !ok {
		t.Fatal("a changed unknown_callers limit did not start a bucket of its new size")
	}
	if got := s.Current().UnknownRateLimit(); got != (RateLimit{PerSecond: 0.001, Burst: 2}) {
		t.Fatalf("UnknownRateLimit = %+v", got)
	}
}

func TestUnknownCallersValues(t *testing.T) {
	tests := []struct {
		yaml string
		want string // "" when valid
	}{
		{"unknown_callers: {rate_limit: {per_second: 2, burst: 20}}", ""},
		{"unknown_callers: {rate_limit: {per_second: 0, burst: 20}}", "p.yaml:8: rate_limit per_second must be a number > 0"},
		{"unknown_callers: {}", "p.yaml:8: unknown_callers has no rate_limit"},
		{"unknown_callers: {rate: 5}", `p.yaml:8: unknown key "rate" in unknown_callers`},
		{"unknown_callers: 5", "p.yaml:8: unknown_callers must be a mapping"},
		{"unknown_caller: {rate_limit: {per_second: 2, burst: 20}}", `unknown key "unknown_caller" in the policy; did you mean "unknown_callers"?`},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(policyFor(scopeA, tt.yaml+"\n")))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want one saying %q", err, tt.want)
			}
		})
	}
	p, err := Parse("p.yaml", []byte(policyFor(scopeA, "")))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.UnknownRateLimit(); got != DefaultUnknownRateLimit {
		t.Fatalf("without unknown_callers: UnknownRateLimit = %+v, want the default %+v", got, DefaultUnknownRateLimit)
	}
}
