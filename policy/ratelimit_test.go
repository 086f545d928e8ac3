package policy

import (
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
		t.Error("Allow(unknown client) = false; Decide is what refuses unknown clients")
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
