package mpsim

import (
	"strings"
	"testing"
	"time"
)

// TestTrustedChainStillExpires: a chain the simulator has found trusted
// and remembers is still refused once a certificate of it has expired,
// or before it is valid, with the same refusal as a chain it has never
// seen; and accepted again when the time is back inside its validity.
func TestTrustedChainStillExpires(t *testing.T) {
	f := getFixture(t)
	s := startSim(t, nil)
	withChain := func(h, _ map[string]any) { h["x5c"] = x5c(f.shortLived, f.ca.Issuing) }
	post := func(now time.Time) result {
		s.SetClock(func() time.Time { return now })
		return s.post(t, grantSpec{now: now, issuer: s.url, edit: withChain}.build(t))
	}
	valid := f.shortLived.NotBefore.Add(time.Minute)
	for i := range 2 { // the second from the remembered chain
		if r := post(valid); r.status != 200 {
			t.Fatalf("grant %d with the chain inside its validity: %d %s %s", i+1, r.status, r.mp, r.message)
		}
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		msg  string
	}{
		{"after the leaf's end", f.shortLived.NotAfter.Add(time.Minute), "Expired key: certificate x5c[0] has expired"},
		{"before the leaf's start", f.shortLived.NotBefore.Add(-time.Minute), "Expired key: certificate x5c[0] is not yet valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(tc.now)
			if r.status != 400 || r.mp != "MP-121" || !strings.Contains(r.message, tc.msg) {
				t.Fatalf("got %d %s %q, want 400 MP-121 %q", r.status, r.mp, r.message, tc.msg)
			}
		})
	}
	if r := post(valid.Add(time.Second)); r.status != 200 {
		t.Fatalf("the chain inside its validity again: %d %s %s", r.status, r.mp, r.message)
	}
}
