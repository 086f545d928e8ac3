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

	"github.com/portvakt/portvakt/internal/p11fault"
)

// faultyFixture is a fixture whose signer reaches SoftHSM2 through the
// fault-injecting module, which answers what real HSMs answer and SoftHSM2
// never does on demand. The token and its key exist before the module is
// loaded: the shim's SoftHSM2 is then the only initialisation of it.
func faultyFixture(t *testing.T) (fixture, *p11fault.Module, Config) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	f := newFixture(t)
	shim := p11fault.New(t, f.tok.Module)
	cfg := f.config()
	cfg.Token.Module = shim.Path()
	cfg.Token.Backoff = Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	return f, shim, cfg
}

func openFaulty(t *testing.T, cfg Config) *Signer {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestBusyIsBackPressure: codes that say the HSM is busy or out of
// resources make Sign wait and try again, within the session wait, and
// never start a reconnection.
func TestBusyIsBackPressure(t *testing.T) {
	for _, code := range []uint{pkcs11.CKR_SESSION_COUNT, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_FUNCTION_CANCELED, pkcs11.CKR_HOST_MEMORY} {
		t.Run(pkcs11.Error(code).Error(), func(t *testing.T) {
			f, shim, cfg := faultyFixture(t)
			cfg.Token.SessionWait = 300 * time.Millisecond
			s := openFaulty(t, cfg)
			digest := digestOf(crypto.SHA256, []byte("busy"))
			inits := shim.Stats().Initializations

			// A short spell of busy answers: the caller waits it out.
			shim.Fail("C_Sign", code, 3)
			sig, err := s.Sign(nil, digest, crypto.SHA256)
			if err != nil {
				t.Fatalf("Sign through three %v answers: %v, want it to wait them out", pkcs11.Error(code), err)
			}
			if err := verifyQuiet(f, digest, sig); err != nil {
				t.Fatal(err)
			}
			// Busy for longer than the session wait: ErrBusy, not an outage.
			shim.Fail("C_Sign", code, 0)
			if _, err := s.Sign(nil, digest, crypto.SHA256); !errors.Is(err, ErrBusy) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("Sign while the HSM stays busy: %v, want ErrBusy", err)
			}
			if err := s.Health(); err != nil {
				t.Fatalf("Health() = %v while the HSM is merely busy", err)
			}
			shim.Clear()
			if _, err := s.Sign(nil, digest, crypto.SHA256); err != nil {
				t.Fatalf("Sign after the HSM is no longer busy: %v", err)
			}
			if got := shim.Stats().Initializations; got != inits || s.Reconnects() != 0 {
				t.Fatalf("%d module initialisations (was %d), %d reconnections: a busy HSM must not be reconnected to", got, inits, s.Reconnects())
			}
		})
	}
}

// TestSessionCountUnderBurst: an HSM with fewer sessions than the pool
// allows answers CKR_SESSION_COUNT to a burst of signatures. Callers wait
// for a session up to the session wait, then get ErrBusy; nobody gets
// ErrUnavailable and the token is not reconnected.
func TestSessionCountUnderBurst(t *testing.T) {
	f, shim, cfg := faultyFixture(t)
	cfg.Token.MaxSessions = 8 // the pool would open 7 signing sessions
	cfg.Token.SessionWait = 200 * time.Millisecond
	s := openFaulty(t, cfg)
	shim.SetSessionLimit(3) // the HSM allows the login session and two more
	shim.Delay("C_Sign", 40*time.Millisecond)
	inits := shim.Stats().Initializations

	var signed, busy atomic.Int64
	var mu sync.Mutex
	var other []error
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				digest := digestOf(crypto.SHA256, []byte{byte(i)})
				sig, err := s.Sign(nil, digest, crypto.SHA256)
				switch {
				case err == nil:
					if verifyQuiet(f, digest, sig) != nil {
						t.Error("a signature does not verify")
					}
					signed.Add(1)
				case errors.Is(err, ErrBusy) && !errors.Is(err, ErrUnavailable):
					busy.Add(1)
				default:
					mu.Lock()
					other = append(other, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	st := shim.Stats()
	if len(other) > 0 {
		t.Fatalf("errors other than ErrBusy in the burst: %v", other)
	}
	if st.SessionCountRefusals == 0 {
		t.Fatal("the HSM never ran out of sessions: the test tested nothing")
	}
	if signed.Load() == 0 || busy.Load() == 0 {
		t.Fatalf("%d signed, %d busy: want callers both served and told to back off", signed.Load(), busy.Load())
	}
	if st.PeakSessions > 3 {
		t.Fatalf("peak of %d sessions over the HSM's limit of 3", st.PeakSessions)
	}
	if st.Initializations != inits || s.Reconnects() != 0 || s.Health() != nil {
		t.Fatalf("running out of sessions reconnected (%d initialisations, was %d; %d reconnections; health %v)",
			st.Initializations, inits, s.Reconnects(), s.Health())
	}
}

// TestGoneStartsRecovery: codes that say the token, session or connection
// is gone fail the call with ErrUnavailable, start a reconnection, and the
// key signs again afterwards.
func TestGoneStartsRecovery(t *testing.T) {
	for _, code := range []uint{
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
	} {
		t.Run(pkcs11.Error(code).Error(), func(t *testing.T) {
			f, shim, cfg := faultyFixture(t)
			s := openFaulty(t, cfg)
			inits := shim.Stats().Initializations
			digest := digestOf(crypto.SHA256, []byte("gone"))
			shim.Fail("C_Sign", code, 1)
			if _, err := s.Sign(nil, digest, crypto.SHA256); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Sign answered %v: %v, want ErrUnavailable", pkcs11.Error(code), err)
			}
			waitFor(t, "the token to be reconnected", func() bool { return s.Health() == nil && s.Reconnects() == 1 })
			sig, err := s.Sign(nil, digest, crypto.SHA256)
			if err != nil {
				t.Fatalf("Sign after reconnecting: %v", err)
			}
			if err := verifyQuiet(f, digest, sig); err != nil {
				t.Fatal(err)
			}
			// Closing the only context finalised the module, so the
			// reconnection initialised it afresh, as SoftHSM2 and p11-kit's
			// client need to find a returned token.
			if got := shim.Stats().Initializations; got != inits+1 {
				t.Fatalf("%d initialisations after one reconnection, want %d", got, inits+1)
			}
		})
	}
}

// TestRefusedPINStopsRecovery: a token that comes back and refuses the
// PIN is not asked again (each try brings a lock closer); health says so.
func TestRefusedPINStopsRecovery(t *testing.T) {
	for _, code := range []uint{pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LOCKED} {
		t.Run(pkcs11.Error(code).Error(), func(t *testing.T) {
			f, shim, cfg := faultyFixture(t)
			cfg.Token.ProbeInterval = 20 * time.Millisecond
			s := openFaulty(t, cfg)
			shim.Fail("C_Login", code, 0)
			shim.Fail("C_Sign", pkcs11.CKR_DEVICE_REMOVED, 1)
			if _, err := s.Sign(nil, digestOf(crypto.SHA256, []byte("x")), crypto.SHA256); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Sign: %v, want ErrUnavailable", err)
			}
			waitFor(t, "recovery to stop on the refused PIN", func() bool { return errors.Is(s.Health(), ErrLoginRefused) })
			logins := shim.Stats().Funcs["C_Login"].Calls
			// Many probe intervals and back-off steps: no further login.
			time.Sleep(20 * cfg.Token.ProbeInterval)
			if got := shim.Stats().Funcs["C_Login"].Calls; got != logins {
				t.Fatalf("%d more logins after the token refused the PIN", got-logins)
			}
			err := s.Health()
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "fix the PIN") {
				t.Fatalf("Health() = %v; want ErrUnavailable saying to fix the PIN", err)
			}
			if _, err := s.Sign(nil, digestOf(crypto.SHA256, []byte("x")), crypto.SHA256); !errors.Is(err, ErrLoginRefused) {
				t.Fatalf("Sign after the refusal: %v, want ErrLoginRefused", err)
			}
			if !strings.Contains(f.logs.String(), "refused the PIN") {
				t.Fatalf("the log does not say the PIN was refused:\n%s", f.logs.String())
			}
		})
	}
}

// TestProbeIgnoresBusyToken: a probe answered with a busy code is not an
// outage.
func TestProbeIgnoresBusyToken(t *testing.T) {
	_, shim, cfg := faultyFixture(t)
	cfg.Token.ProbeInterval = 10 * time.Millisecond
	s := openFaulty(t, cfg)
	shim.Fail("C_GetAttributeValue", pkcs11.CKR_DEVICE_MEMORY, 0)
	shim.Await("several probes", func(st p11fault.Stats) bool { return st.Funcs["C_GetAttributeValue"].Faults >= 5 })
	if err := s.Health(); err != nil || s.Reconnects() != 0 {
		t.Fatalf("Health() = %v, %d reconnections after busy probes", err, s.Reconnects())
	}
	shim.Fail("C_GetAttributeValue", pkcs11.CKR_DEVICE_REMOVED, 1)
	waitFor(t, "the probe to see the token gone and reconnect", func() bool { return s.Reconnects() == 1 && s.Health() == nil })
}
