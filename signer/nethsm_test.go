package signer

import (
	"crypto"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/internal/p11kittest"
)

// TestCutOffNetworkHSM: a network HSM cut off without a reset (its
// server stopped, the connection open) answers nothing, and p11-kit's
// client waits for ever. The probe marks the token stalled: health says
// so and signatures fail at once rather than hang; when the HSM answers
// again, all is as before, with no reconnection.
func TestCutOffNetworkHSM(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	f := newFixture(t)
	srv := p11kittest.Start(t, f.tok)
	cfg := f.config()
	cfg.Token.Module = srv.ClientModule()
	cfg.Token.ProbeInterval = 50 * time.Millisecond
	cfg.Token.SessionWait = 100 * time.Millisecond
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	digest := digestOf(crypto.SHA256, []byte("cut off"))
	if _, err := s.Sign(nil, digest, crypto.SHA256); err != nil {
		t.Fatal(err)
	}

	srv.Freeze()
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			srv.Thaw()
		}
	})
	waitFor(t, "health to see the HSM stalled", func() bool { return errors.Is(s.Health(), ErrUnavailable) })
	done := make(chan error, 1)
	go func() {
		_, err := s.Sign(nil, digest, crypto.SHA256)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Sign while the HSM is cut off: %v, want ErrUnavailable", err)
		}
	case <-time.After(30 * time.Second): // a hang guard, not a speed claim
		t.Fatal("Sign hung while the HSM was cut off")
	}

	srv.Thaw()
	thawed = true
	waitFor(t, "health to see the HSM answer again", func() bool { return s.Health() == nil })
	sig, err := s.Sign(nil, digest, crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign after the HSM answers again: %v", err)
	}
	if err := verifyQuiet(f, digest, sig); err != nil {
		t.Fatal(err)
	}
	if s.Reconnects() != 0 {
		t.Fatalf("%d reconnections: the connection survived the cut and must be kept", s.Reconnects())
	}
}
