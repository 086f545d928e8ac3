package signer

import (
	"crypto"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/internal/p11"
)

// TestRecovery takes the token away while signing goes on, in the two ways
// a token goes away, and checks that signing resumes in the same process,
// that callers meanwhile get ErrUnavailable (not a hang, not a wrong
// signature), and that nothing leaks.
func TestRecovery(t *testing.T) {
	tests := []struct {
		name string
		// takeAway removes the token and returns how to bring it back.
		takeAway func(t *testing.T, f fixture, s *Signer) (bringBack func())
		// lasting: the token stays away until brought back, so signing
		// must keep failing meanwhile. Closed sessions are repaired by the
		// first reconnection attempt.
		lasting bool
	}{
		{"all sessions closed", closeAllSessions, false},
		{"token directory moved away and back", moveTokenDirectory, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Cleanups run last-registered first: this one runs after the
			// load and the Signer have stopped.
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
			f := newFixture(t)
			cfg := f.config()
			cfg.Token.Backoff = Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			load := startSigning(t, s, f)

			load.waitForSuccesses(t, 5)
			bringBack := tt.takeAway(t, f, s)
			waitFor(t, "signing to fail while the token is away", func() bool { return load.failures.Load() > 0 })
			if tt.lasting {
				failuresBefore := load.failures.Load()
				waitFor(t, "signing to keep failing", func() bool { return load.failures.Load() > failuresBefore+3 })
				if s.Health() == nil {
					t.Fatal("Health() = nil while the token is away")
				}
			}
			bringBack()
			waitFor(t, "signing to resume", func() bool { return s.Health() == nil })
			load.waitForSuccesses(t, load.successes.Load()+5)
			load.stop()

			if got := s.Reconnects(); got < 1 {
				t.Errorf("Reconnects() = %d, want at least 1", got)
			}
			if load.wrongSignatures.Load() != 0 {
				t.Errorf("%d signatures did not verify", load.wrongSignatures.Load())
			}
			if other := load.otherErrors(); len(other) > 0 {
				t.Errorf("errors other than ErrUnavailable while the token was away: %v", other)
			}
			for _, want := range []string{"HSM token lost", "HSM token back"} {
				if !strings.Contains(f.logs.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, f.logs.String())
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			assertModuleReleased(t, f.tok.Module)
		})
	}
}

// closeAllSessions closes every session of the process on the token, as an
// HSM restart does. It holds the Signer's write lock meanwhile, so that no
// C_Sign is in flight: SoftHSM2 frees a session that C_CloseAllSessions
// closes under a running C_Sign of the same process (free(): invalid
// pointer), a race only an in-process test can cause. Signing goroutines
// keep calling Sign throughout.
func closeAllSessions(t *testing.T, f fixture, s *Signer) func() {
	m, err := p11.Open(f.tok.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	slot, err := m.FindSlot(f.tok.Label)
	if err != nil {
		t.Fatal(err)
	}
	// Closing every session also logs the application out and, in
	// SoftHSM2, invalidates every object handle: what an HSM restart does.
	s.token.mu.Lock()
	err = m.CloseAllSessions(slot)
	s.token.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return func() {}
}

// moveTokenDirectory takes the token away (softhsmtest: its directory is
// moved; on opencryptoki its sessions are closed too, so under the write
// lock, as in closeAllSessions).
func moveTokenDirectory(t *testing.T, f fixture, s *Signer) func() {
	s.token.mu.Lock()
	defer s.token.mu.Unlock()
	return f.tok.TakeAway(t)
}

// assertModuleReleased checks that the Signer left no crypto11 context
// open: crypto11 finalises the module when its last context closes, so a
// fresh initialisation must succeed rather than find it initialised.
func assertModuleReleased(t *testing.T, module string) {
	t.Helper()
	ctx := pkcs11.New(module)
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		t.Fatalf("module still initialised after Close (a context leaked): %v", err)
	}
	_ = ctx.Finalize()
}

// signingLoad signs continuously from two goroutines and counts outcomes.
type signingLoad struct {
	successes, failures, wrongSignatures atomic.Int64
	mu                                   sync.Mutex
	other                                []error
	done                                 chan struct{}
	wg                                   sync.WaitGroup
}

func startSigning(t *testing.T, s *Signer, f fixture) *signingLoad {
	l := &signingLoad{done: make(chan struct{})}
	for range 2 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			digest := digestOf(crypto.SHA256, []byte("load"))
			for {
				select {
				case <-l.done:
					return
				default:
				}
				sig, err := s.Sign(nil, digest, crypto.SHA256)
				switch {
				case err == nil:
					if verifyErr := verifyQuiet(f, digest, sig); verifyErr != nil {
						l.wrongSignatures.Add(1)
					}
					l.successes.Add(1)
				case errors.Is(err, ErrUnavailable):
					l.failures.Add(1)
					time.Sleep(time.Millisecond)
				default:
					l.mu.Lock()
					l.other = append(l.other, err)
					l.mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

func (l *signingLoad) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

func (l *signingLoad) otherErrors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.other
}

func (l *signingLoad) waitForSuccesses(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, "signatures", func() bool { return l.successes.Load() >= n })
}

// waitFor polls cond. The limit only keeps a broken build from hanging; it
// is no performance claim.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
