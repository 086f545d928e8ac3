package policy

import (
	"fmt"
	"reflect"
	"testing"
)

// A repeat of an allowed request is answered as the first time, from what
// the policy remembers, with no allocation: the cached token path decides
// every call, and most calls are repeats.
func TestDecideRepeat(t *testing.T) {
	p := loadGood(t)
	const ecoc, ecocDeleg, consumer = "svv:kjoretoy/ecoc", "svv:kjoretoy/ecoc.delegert", "974760673"
	tests := []struct {
		name   string
		req    Request
		allocs float64 // on a repeat
	}{
		{"one scope", Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecoc}}, 0},
		{"delegated", Request{Identities: []string{"uid:1000"}, Environment: "test", Scopes: []string{ecocDeleg}, ConsumerOrg: consumer}, 0},
		{"by a DNS name", Request{Identities: []string{"dns:billing.internal"}, Environment: "prod", Scopes: []string{ecoc}}, 0},
		{"by a DNS name not in lower case", Request{Identities: []string{"dns:Billing.Internal"}, Environment: "prod", Scopes: []string{ecoc}}, 1},
		{"by a later identity", Request{Identities: []string{"uid:4242", "uid:1000"}, Environment: "prod", Scopes: []string{ecoc}}, 0},
		// Several scopes are joined into the key: one allocation.
		{"two scopes", Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecoc, ecoc}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := p.Decide(tt.req)
			if !first.Allowed {
				t.Fatalf("the case is meant to be allowed: %s", first.Reason)
			}
			fresh := loadGood(t).Decide(tt.req) // decided by a policy that remembers nothing
			if again := p.Decide(tt.req); !reflect.DeepEqual(again, first) || !reflect.DeepEqual(again, fresh) {
				t.Errorf("repeat = %+v\nfirst = %+v\nfresh = %+v", again, first, fresh)
			}
			if n := testing.AllocsPerRun(100, func() { p.Decide(tt.req) }); n > tt.allocs {
				t.Errorf("a repeat allocates %v times, want at most %v", n, tt.allocs)
			}
		})
	}
}

// What is remembered is keyed by everything the decision depends on: a
// request of another shape is decided for itself.
func TestDecideRememberedByShape(t *testing.T) {
	p := loadGood(t)
	const ecoc = "svv:kjoretoy/ecoc"
	allowed := Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecoc}}
	if d := p.Decide(allowed); !d.Allowed {
		t.Fatalf("Decide(%+v) denied: %s", allowed, d.Reason)
	}
	others := map[string]Request{
		"another environment": {Identities: []string{"uid:1000"}, Environment: "nowhere", Scopes: []string{ecoc}},
		"another scope":       {Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
		"a consumer":          {Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecoc}, ConsumerOrg: "974760673"},
		"a system user":       {Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecoc}, SystemUserOrg: "974760673"},
		"an unknown caller":   {Identities: []string{"uid:4242"}, Environment: "prod", Scopes: []string{ecoc}},
		"scopes run together": {Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecoc + "\x00" + ecoc}},
	}
	for name, req := range others {
		t.Run(name, func(t *testing.T) {
			if d := p.Decide(req); d.Allowed {
				t.Errorf("Decide(%+v) allowed: %s", req, d.Reason)
			}
		})
	}
}

// After a reload the next call is decided by the new policy, whatever the
// old one remembered.
func TestDecisionAfterReload(t *testing.T) {
	s, path, _ := newTestStore(t, policyFor(scopeA, ""))
	for range 2 { // the second is remembered
		if !allows(s.Current(), scopeA) {
			t.Fatal("the first policy does not allow its scope")
		}
	}
	writeFile(t, path, policyFor(scopeB, ""))
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if allows(s.Current(), scopeA) {
		t.Error("after the reload the old policy's remembered decision still allows its scope")
	}
	if !allows(s.Current(), scopeB) {
		t.Error("after the reload the new policy's scope is denied")
	}
}

// However many shapes a policy allows, it remembers a bounded number.
func TestDecisionsBounded(t *testing.T) {
	var ds decisions
	for i := range maxRememberedDecisions + 10 {
		ds.put(decisionKey{identity: fmt.Sprint(i)}, Decision{Allowed: true})
	}
	if n := len(*ds.m.Load()); n != maxRememberedDecisions {
		t.Errorf("%d decisions remembered, want %d", n, maxRememberedDecisions)
	}
	if _, ok := ds.get(decisionKey{identity: "0"}); !ok {
		t.Error("the first decision was forgotten")
	}
}
