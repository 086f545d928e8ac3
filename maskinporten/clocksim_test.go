package maskinporten

import (
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
)

// TestClockLearntFromARefusal: against the simulator with its clock 30 s
// ahead (and behind), a grant on the host's clock is refused with MP-130;
// the refusal's Date teaches the Clock the offset, and the next grant,
// made on the corrected clock, gets a token.
func TestClockLearntFromARefusal(t *testing.T) {
	for _, ahead := range []time.Duration{30 * time.Second, -30 * time.Second} {
		t.Run(ahead.String(), func(t *testing.T) {
			w := world{mptest.New(t, mptest.Options{ClockOffset: ahead})}
			c := NewClient(ClientOptions{})
			clock := NewClock(ClockOptions{})
			b := w.builder(t, GrantOptions{Now: clock.Now})

			g, err := b.Build(w.request(mptest.ScopeOwn))
			if err != nil {
				t.Fatal(err)
			}
			_, attempt, err := c.Post(t.Context(), w.Endpoint, g)
			if !IsClockRefusal(err) {
				t.Fatalf("a grant %v off Maskinporten's clock: %v, want an MP-130 refusal", ahead, err)
			}
			if attempt.Date == "" {
				t.Fatal("the refusal's Attempt has no Date")
			}
			before := clock.Correction()
			offset, ok := clock.Observe(attempt.Date, attempt.Sent, attempt.Received)
			if !ok || (offset-ahead).Abs() > 2*time.Second {
				t.Fatalf("offset learnt from the refusal = %v, %v; want about %v", offset, ok, ahead)
			}
			if !clock.Moved(before) {
				t.Fatal("learning a 30 s offset does not count as a move worth a retry")
			}

			g2, err := b.Build(w.request(mptest.ScopeOwn))
			if err != nil {
				t.Fatal(err)
			}
			if skew := g2.IssuedAt.Sub(g.IssuedAt) - ahead; skew.Abs() > 2*time.Second {
				t.Errorf("the second grant's iat moved by %v, want about %v", g2.IssuedAt.Sub(g.IssuedAt), ahead)
			}
			tok, attempt, err := c.Post(t.Context(), w.Endpoint, g2)
			if err != nil {
				t.Fatalf("a grant on the corrected clock: %v", err)
			}
			if tok.GrantJTI != g2.JTI || g2.JTI == g.JTI {
				t.Errorf("token from grant %s; grants %s then %s", tok.GrantJTI, g.JTI, g2.JTI)
			}
			if _, ok := clock.Observe(attempt.Date, attempt.Sent, attempt.Received); !ok {
				t.Error("a token's answer has no usable Date")
			}
			if st := w.Sim.Stats(); st.Refused["MP-130"] != 1 || st.Issued != 1 {
				t.Errorf("the simulator refused %d grants with MP-130 and issued %d tokens, want 1 and 1", st.Refused["MP-130"], st.Issued)
			}
		})
	}
}

// TestClockWellSynced: against a simulator on the host's own time, the
// offset learnt is under a second and Now stays the local time.
func TestClockWellSynced(t *testing.T) {
	w := newWorld(t)
	c := NewClient(ClientOptions{})
	clock := NewClock(ClockOptions{})
	_, attempt, err := c.Post(t.Context(), w.Endpoint, mustBuild(t, w.builder(t, GrantOptions{Now: clock.Now}), w.request(mptest.ScopeOwn)))
	if err != nil {
		t.Fatal(err)
	}
	offset, ok := clock.Observe(attempt.Date, attempt.Sent, attempt.Received)
	if !ok || offset.Abs() > time.Second {
		t.Fatalf("offset to a simulator on the host's clock = %v, %v; want under a second", offset, ok)
	}
	if clock.Correction() != 0 {
		t.Errorf("Correction = %v on a synced host, want 0", clock.Correction())
	}
}

func mustBuild(t *testing.T, b *GrantBuilder, req GrantRequest) Grant {
	t.Helper()
	g, err := b.Build(req)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
