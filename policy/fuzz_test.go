package policy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// FuzzParse: whatever the file holds, Parse never panics, and a policy it
// accepts answers requests without panicking, with decisions that hold
// together: an allowed request has a client and rules, a reason is one
// line, and nothing is allowed to an unknown caller.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(goodPolicy); err == nil {
		f.Add(data)
	}
	f.Add([]byte(policyFor(scopeA, otherClient)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			for _, prob := range Problems(err) {
				if !strings.HasPrefix(prob.Error(), "fuzz.yaml:") {
					t.Fatalf("problem without the file name: %q", prob)
				}
			}
			return
		}
		if len(p.Clients()) == 0 {
			t.Fatal("a policy without clients was accepted")
		}
		if envs := p.Environments(); !slices.IsSorted(envs) {
			t.Fatalf("Environments() = %q, not sorted", envs)
		}
		// Ask for what each rule grants, and for variations of it.
		for _, name := range p.Clients() {
			grants := p.Grants(name)
			if len(grants) == 0 {
				t.Fatalf("client %q has no grants", name)
			}
			c := p.byName[name]
			p.Allow(name)
			for _, g := range grants {
				for _, id := range append(firstFew(c.identities), "uid:", "nobody") {
					for _, org := range append(firstFew(g.ConsumerOrgs), "") {
						req := Request{Identities: []string{id}, Environment: g.Environments[0], Scopes: g.Scopes, ConsumerOrg: org}
						check(t, p, req)
						req.Scopes = append(slices.Clone(g.Scopes), "svv:x")
						check(t, p, req)
					}
				}
			}
		}
	})
}

func check(t *testing.T, p *Policy, req Request) {
	d := p.Decide(req)
	if d.Reason == "" || strings.ContainsAny(d.Reason, "\r\n") {
		t.Fatalf("Decide(%+v).Reason = %q", req, d.Reason)
	}
	if d.Allowed && (d.Client == "" || len(d.Rules) == 0) {
		t.Fatalf("Decide(%+v) allowed without a client or a rule: %+v", req, d)
	}
	if !d.Allowed && len(d.Rules) > 0 {
		t.Fatalf("Decide(%+v) denied with rules: %+v", req, d)
	}
	if _, _, known := p.ClientOf(req.Identities); !known && d.Allowed {
		t.Fatalf("Decide(%+v) allowed an unknown caller", req)
	}
	if slices.Contains(req.Scopes, "svv:x") && d.Allowed && !slices.ContainsFunc(p.Grants(d.Client), func(g Grant) bool { return slices.Contains(g.Scopes, "svv:x") }) {
		t.Fatalf("Decide(%+v) allowed a scope no rule names", req)
	}
}

// firstFew bounds the requests tried per policy, so that the fuzzer spends
// its time on new files rather than on one large one.
func firstFew(s []string) []string { return slices.Clone(s[:min(len(s), 4)]) }
