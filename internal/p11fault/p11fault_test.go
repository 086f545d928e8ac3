package p11fault_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/internal/p11fault"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

const keyLabel = "seal"

// setup gives the test a SoftHSM2 token holding a key, and the shim in
// front of SoftHSM2. The key is made before anything loads the shim: once
// the shim has initialised SoftHSM2, crypto11 cannot open SoftHSM2 by its
// own path in this process.
func setup(t testing.TB) (softhsmtest.Token, *p11fault.Module) {
	t.Helper()
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, keyLabel)
	return tok, p11fault.New(t, tok.Module)
}

func configure(tok softhsmtest.Token, module string, maxSessions int) (*crypto11.Context, error) {
	return crypto11.Configure(&crypto11.Config{
		Path:        module,
		TokenLabel:  tok.Label,
		Pin:         tok.PIN.Reveal(),
		MaxSessions: maxSessions,
	})
}

// openCrypto11 opens the token through the shim with crypto11, closed at
// the end of the test, and finds the key.
func openCrypto11(t testing.TB, tok softhsmtest.Token, shim *p11fault.Module, maxSessions int) (*crypto11.Context, crypto11.Signer) {
	t.Helper()
	ctx, err := configure(tok, shim.Path(), maxSessions)
	if err != nil {
		t.Fatalf("crypto11 through the shim: %v", err)
	}
	t.Cleanup(func() { _ = ctx.Close() })
	key, err := ctx.FindKeyPair(nil, []byte(keyLabel))
	if err != nil {
		t.Fatalf("finding the key through the shim: %v", err)
	}
	return ctx, key
}

// sign makes an RSA PKCS#1 v1.5 signature with key and verifies it.
func sign(key crypto11.Signer) error {
	digest := sha256.Sum256([]byte("an eSeal"))
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return err
	}
	return rsa.VerifyPKCS1v15(key.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig)
}

// rawModule is a miekg/pkcs11 handle on a module, and the token's slot.
type rawModule struct {
	*pkcs11.Ctx
	slot uint
}

// openRaw loads the module at path with miekg/pkcs11. If the module is
// already initialised in this process (a crypto11 context has it), it is
// borrowed and left initialised at the end of the test; otherwise it is
// finalised then.
func openRaw(t testing.TB, path, label string) rawModule {
	t.Helper()
	ctx := pkcs11.New(path)
	if ctx == nil {
		t.Fatalf("loading %s failed", path)
	}
	owned := true
	if err := ctx.Initialize(); errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		owned = false
	} else if err != nil {
		ctx.Destroy()
		t.Fatalf("initialising %s: %v", path, err)
	}
	t.Cleanup(func() {
		if owned {
			_ = ctx.Finalize()
		}
		ctx.Destroy()
	})
	return rawModule{Ctx: ctx, slot: findSlot(t, ctx, label)}
}

func findSlot(t testing.TB, ctx *pkcs11.Ctx, label string) uint {
	t.Helper()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Fatalf("listing slots: %v", err)
	}
	for _, slot := range slots {
		if info, err := ctx.GetTokenInfo(slot); err == nil && info.Label == label {
			return slot
		}
	}
	t.Fatalf("no token labelled %q", label)
	return 0
}

// open opens a read-write session, closed at the end of the test.
func (r rawModule) open(t testing.TB) pkcs11.SessionHandle {
	t.Helper()
	s, err := r.OpenSession(r.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("opening a session: %v", err)
	}
	t.Cleanup(func() { _ = r.CloseSession(s) })
	return s
}

// key finds the private key; the session must be logged in.
func (r rawModule) key(t testing.TB, s pkcs11.SessionHandle) pkcs11.ObjectHandle {
	t.Helper()
	err := r.FindObjectsInit(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, keyLabel),
	})
	if err != nil {
		t.Fatalf("finding the key: %v", err)
	}
	objs, _, err := r.FindObjects(s, 2)
	_ = r.FindObjectsFinal(s)
	if err != nil || len(objs) != 1 {
		t.Fatalf("finding the key: %d objects, %v", len(objs), err)
	}
	return objs[0]
}

var message = []byte("an eSeal")

// signParts signs message with CKM_SHA256_RSA_PKCS in one C_Sign or, if
// parts, with C_SignUpdate and C_SignFinal.
func (r rawModule) sign(s pkcs11.SessionHandle, key pkcs11.ObjectHandle, parts bool) ([]byte, error) {
	if err := r.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}, key); err != nil {
		return nil, err
	}
	if !parts {
		return r.Sign(s, message)
	}
	if err := r.SignUpdate(s, message); err != nil {
		return nil, err
	}
	return r.SignFinal(s)
}

func isCode(err error, code uint) bool { return errors.Is(err, pkcs11.Error(code)) }

func TestSigningUnchangedWithoutFaults(t *testing.T) {
	tok, shim := setup(t)
	_, key := openCrypto11(t, tok, shim, 4)
	if err := sign(key); err != nil {
		t.Fatalf("crypto11 signature through the shim: %v", err)
	}

	raw := openRaw(t, shim.Path(), tok.Label)
	s := raw.open(t)
	handle := raw.key(t, s)
	digest := sha256.Sum256(message)
	for _, parts := range []bool{false, true} {
		sig, err := raw.sign(s, handle, parts)
		if err == nil {
			err = rsa.VerifyPKCS1v15(key.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig)
		}
		if err != nil {
			t.Fatalf("miekg/pkcs11 signature through the shim (multi-part %v): %v", parts, err)
		}
	}

	st := shim.Stats()
	if !st.Initialized || st.Initializations != 1 {
		t.Errorf("initialised %v, %d initialisations; want true, 1", st.Initialized, st.Initializations)
	}
	// One C_Sign pair (length, signature) from crypto11, one from us.
	if got := st.Funcs["C_Sign"]; got.Calls != 4 || got.Faults != 0 || got.Active != 0 {
		t.Errorf("C_Sign stats %+v; want 4 calls, no faults, none active", got)
	}
	for name, f := range st.Funcs {
		if f.Faults != 0 || f.Delayed != 0 {
			t.Errorf("%s: %+v without any fault set", name, f)
		}
	}
	if st.SessionCountRefusals != 0 || st.ControlErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestFunctionsMatchShim checks that the Go list of wrapped functions is
// the C one.
func TestFunctionsMatchShim(t *testing.T) {
	tok, shim := setup(t)
	openRaw(t, shim.Path(), tok.Label)
	var names []string
	for name := range shim.Stats().Funcs {
		names = append(names, name)
	}
	want := slices.Clone(p11fault.Functions)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("the shim wraps %v; p11fault.Functions lists %v", names, want)
	}
}

func TestSessionLimit(t *testing.T) {
	tok, shim := setup(t)
	raw := openRaw(t, shim.Path(), tok.Label)
	shim.SetSessionLimit(2)

	first, second := raw.open(t), raw.open(t)
	_, err := raw.OpenSession(raw.slot, pkcs11.CKF_SERIAL_SESSION)
	if !isCode(err, pkcs11.CKR_SESSION_COUNT) {
		t.Fatalf("third session with a limit of 2: %v; want CKR_SESSION_COUNT", err)
	}
	if st := shim.Stats(); st.OpenSessions != 2 || st.PeakSessions != 2 || st.SessionCountRefusals != 1 || st.Funcs["C_OpenSession"].Faults != 1 {
		t.Fatalf("after the refusal: %+v", st)
	}

	if err := raw.CloseSession(first); err != nil {
		t.Fatal(err)
	}
	if st := shim.Stats(); st.OpenSessions != 1 {
		t.Fatalf("after a close: %d sessions open; want 1", st.OpenSessions)
	}
	// A failing close of a closed session must not lower the count.
	if err := raw.CloseSession(first); !isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) {
		t.Fatalf("closing a closed session: %v", err)
	}
	third := raw.open(t)
	if _, err := raw.OpenSession(raw.slot, pkcs11.CKF_SERIAL_SESSION); !isCode(err, pkcs11.CKR_SESSION_COUNT) {
		t.Fatalf("third session again: %v; want CKR_SESSION_COUNT", err)
	}

	if err := raw.CloseAllSessions(raw.slot); err != nil {
		t.Fatal(err)
	}
	if st := shim.Stats(); st.OpenSessions != 0 || st.PeakSessions != 2 || st.SessionCountRefusals != 2 {
		t.Fatalf("after C_CloseAllSessions: %+v", st)
	}
	for _, s := range []pkcs11.SessionHandle{second, third} {
		if _, err := raw.GetSessionInfo(s); !isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) {
			t.Fatalf("a session after C_CloseAllSessions: %v", err)
		}
	}

	shim.SetSessionLimit(0)
	for range 3 {
		raw.open(t)
	}
	if st := shim.Stats(); st.OpenSessions != 3 || st.PeakSessions != 3 {
		t.Fatalf("without a limit: %+v", st)
	}
}

// TestSessionLimitThroughCrypto11 is back-pressure through the whole stack:
// one signature is held in the HSM, and the next one needs a new session
// when the HSM has none left. (crypto11's pool fills each of its empty slots
// with a new session before it reuses an idle one.)
func TestSessionLimitThroughCrypto11(t *testing.T) {
	tok, shim := setup(t)
	_, key := openCrypto11(t, tok, shim, 4) // 1 persistent session + a pool of 3
	shim.Delay("C_Sign", time.Hour)

	held := make(chan error, 1)
	go func() { held <- sign(key) }()
	st := shim.Await("a held C_Sign", func(s p11fault.Stats) bool { return s.Funcs["C_Sign"].Active == 1 })
	shim.SetSessionLimit(st.OpenSessions)

	if err := sign(key); !isCode(err, pkcs11.CKR_SESSION_COUNT) {
		t.Fatalf("signing while the HSM has no session left: %v; want CKR_SESSION_COUNT", err)
	}
	if st := shim.Stats(); st.SessionCountRefusals != 1 || st.PeakSessions != st.OpenSessions {
		t.Fatalf("stats %+v; want 1 refusal, no session over the limit", st)
	}
	select {
	case err := <-held:
		t.Fatalf("the held signature returned (%v) before the delay was cleared", err)
	default:
	}

	shim.Clear()
	if err := <-held; err != nil {
		t.Fatalf("the held signature: %v", err)
	}
	if err := sign(key); err != nil {
		t.Fatalf("signing after the fault was cleared: %v", err)
	}
}

// TestFailNextCall fails one call of each function, through crypto11 or
// miekg/pkcs11, on contexts that stay open, and checks that the next call
// works: the fault is gone and left nothing behind in the real module (a
// faulted C_Sign must end the signing operation, or the next C_SignInit on
// the session would get CKR_OPERATION_ACTIVE).
func TestFailNextCall(t *testing.T) {
	tok, shim := setup(t)
	ctx, key := openCrypto11(t, tok, shim, 2) // one pooled session: every signature reuses it
	signC11 := func() error { return sign(key) }
	// The crypto11 context's login covers these sessions too.
	raw := openRaw(t, shim.Path(), tok.Label)
	s := raw.open(t)
	handle := raw.key(t, s)
	signRaw := func(parts bool) func() error {
		return func() error { _, err := raw.sign(s, handle, parts); return err }
	}

	tests := []struct {
		function string
		code     uint
		call     func() error
	}{
		{"C_Sign", pkcs11.CKR_DEVICE_MEMORY, signC11},
		{"C_Sign", pkcs11.CKR_DEVICE_REMOVED, signRaw(false)},
		{"C_SignInit", pkcs11.CKR_FUNCTION_CANCELED, signC11},
		{"C_SignUpdate", pkcs11.CKR_DEVICE_MEMORY, signRaw(true)},
		{"C_SignFinal", pkcs11.CKR_DEVICE_ERROR, signRaw(true)},
		{"C_FindObjectsInit", pkcs11.CKR_DEVICE_REMOVED, func() error {
			_, err := ctx.FindKeyPair(nil, []byte(keyLabel))
			return err
		}},
		{"C_OpenSession", pkcs11.CKR_SESSION_COUNT, func() error {
			s, err := raw.OpenSession(raw.slot, pkcs11.CKF_SERIAL_SESSION)
			if err == nil {
				err = raw.CloseSession(s)
			}
			return err
		}},
		{"C_GetTokenInfo", pkcs11.CKR_DEVICE_REMOVED, func() error {
			_, err := raw.GetTokenInfo(raw.slot)
			return err
		}},
		{"C_GetSessionInfo", pkcs11.CKR_DEVICE_ERROR, func() error {
			_, err := raw.GetSessionInfo(s)
			return err
		}},
		{"C_GetAttributeValue", pkcs11.CKR_DEVICE_MEMORY, func() error {
			_, err := raw.GetAttributeValue(s, handle, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
			return err
		}},
		{"C_CloseSession", pkcs11.CKR_DEVICE_REMOVED, func() error {
			s, err := raw.OpenSession(raw.slot, pkcs11.CKF_SERIAL_SESSION)
			if err == nil {
				err = raw.CloseSession(s)
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.function, pkcs11.Error(tt.code)), func(t *testing.T) {
			before := shim.Stats()
			shim.Fail(tt.function, tt.code, 1)
			if err := tt.call(); !isCode(err, tt.code) {
				t.Fatalf("first call: %v; want %v", err, pkcs11.Error(tt.code))
			}
			if err := tt.call(); err != nil {
				t.Fatalf("second call: %v; want success", err)
			}
			after := shim.Stats()
			if got := after.Funcs[tt.function].Faults - before.Funcs[tt.function].Faults; got != 1 {
				t.Errorf("%d faults counted; want 1", got)
			}
			// A faulted close still closed (see Fail): no session leaks.
			if after.OpenSessions != before.OpenSessions {
				t.Errorf("%d sessions open, %d before", after.OpenSessions, before.OpenSessions)
			}
		})
	}
}

func TestFailTimes(t *testing.T) {
	tok, shim := setup(t)
	raw := openRaw(t, shim.Path(), tok.Label)
	tokenInfo := func() error { _, err := raw.GetTokenInfo(raw.slot); return err }

	for _, times := range []int{1, 3, 0} {
		t.Run(fmt.Sprintf("times=%d", times), func(t *testing.T) {
			shim.Fail("C_GetTokenInfo", pkcs11.CKR_DEVICE_REMOVED, times)
			failing := times
			if times == 0 {
				failing = 10 // until cleared: as many as we care to try
			}
			for i := range failing {
				if err := tokenInfo(); !isCode(err, pkcs11.CKR_DEVICE_REMOVED) {
					t.Fatalf("call %d: %v; want CKR_DEVICE_REMOVED", i+1, err)
				}
			}
			if times == 0 {
				shim.Clear()
			}
			if err := tokenInfo(); err != nil {
				t.Fatalf("after %d failures: %v", failing, err)
			}
		})
	}
}

// TestConfigureFailures fails each step of crypto11.Configure once: the
// code must reach the caller (a locked PIN is a reason to stop, a removed
// device one to retry). crypto11 finalises and unloads the shim when
// Configure fails; the rule must not re-arm when the shim is loaded again,
// so the next Configure works.
func TestConfigureFailures(t *testing.T) {
	tok, shim := setup(t)
	for _, tt := range []struct {
		function string
		code     uint
	}{
		{"C_Initialize", pkcs11.CKR_DEVICE_ERROR},
		{"C_GetSlotList", pkcs11.CKR_DEVICE_REMOVED},
		{"C_GetTokenInfo", pkcs11.CKR_TOKEN_NOT_PRESENT},
		{"C_OpenSession", pkcs11.CKR_SESSION_COUNT},
		{"C_Login", pkcs11.CKR_PIN_LOCKED},
		{"C_Login", pkcs11.CKR_PIN_INCORRECT},
		{"C_Login", pkcs11.CKR_DEVICE_REMOVED},
	} {
		t.Run(fmt.Sprintf("%s/%s", tt.function, pkcs11.Error(tt.code)), func(t *testing.T) {
			before := shim.Stats()
			shim.Fail(tt.function, tt.code, 1)
			if ctx, err := configure(tok, shim.Path(), 2); !isCode(err, tt.code) {
				if err == nil {
					_ = ctx.Close()
				}
				t.Fatalf("crypto11.Configure: %v; want %v", err, pkcs11.Error(tt.code))
			}
			st := shim.Stats()
			if st.Initialized || st.OpenSessions != 0 {
				t.Fatalf("after the failed Configure: %+v; want the shim finalised, no sessions", st)
			}
			if got := st.Funcs[tt.function].Faults - before.Funcs[tt.function].Faults; got != 1 {
				t.Errorf("%d faults counted; want 1", got)
			}
			ctx, err := configure(tok, shim.Path(), 2)
			if err != nil {
				t.Fatalf("Configure after the one failure: %v", err)
			}
			if err := ctx.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	tok, shim := setup(t)
	raw := openRaw(t, shim.Path(), tok.Label)
	s := raw.open(t)

	t.Run("held until cleared", func(t *testing.T) {
		shim.Delay("C_GetSessionInfo", time.Hour)
		done := make(chan error, 1)
		go func() {
			_, err := raw.GetSessionInfo(s)
			done <- err
		}()
		st := shim.Await("a held C_GetSessionInfo", func(s p11fault.Stats) bool { return s.Funcs["C_GetSessionInfo"].Active == 1 })
		if st.Funcs["C_GetSessionInfo"].Delayed != 1 {
			t.Errorf("C_GetSessionInfo %+v; want 1 delayed", st.Funcs["C_GetSessionInfo"])
		}
		// The held call holds its session, not the module.
		if _, err := raw.GetTokenInfo(raw.slot); err != nil {
			t.Fatalf("another function while a call is held: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("the held call returned (%v) before the delay was cleared", err)
		default:
		}
		shim.Clear()
		if err := <-done; err != nil {
			t.Fatalf("the released call: %v", err)
		}
		if st := shim.Stats(); st.Funcs["C_GetSessionInfo"].Active != 0 {
			t.Fatalf("C_GetSessionInfo %+v after release", st.Funcs["C_GetSessionInfo"])
		}
	})

	const d = 20 * time.Millisecond
	for _, tt := range []struct {
		name string
		code uint // 0: no fail rule
	}{
		{"delay", 0},
		{"delay then fail, as a timeout", pkcs11.CKR_FUNCTION_CANCELED},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(shim.Clear)
			shim.Delay("C_GetTokenInfo", d)
			if tt.code != 0 {
				shim.Fail("C_GetTokenInfo", tt.code, 1)
			}
			start := time.Now()
			_, err := raw.GetTokenInfo(raw.slot)
			if elapsed := time.Since(start); elapsed < d {
				t.Errorf("the call took %v; want at least %v", elapsed, d)
			}
			if tt.code == 0 && err != nil || tt.code != 0 && !isCode(err, tt.code) {
				t.Fatalf("delayed call: %v; want code %#x", err, tt.code)
			}
		})
	}
}

// TestReinitialise finalises the shim and initialises it again on one
// handle: the sessions are gone, the faults still apply.
func TestReinitialise(t *testing.T) {
	tok, shim := setup(t)
	ctx := pkcs11.New(shim.Path())
	if ctx == nil {
		t.Fatal("loading the shim failed")
	}
	defer ctx.Destroy()
	shim.SetSessionLimit(1)
	for round := 1; round <= 2; round++ {
		if err := ctx.Initialize(); err != nil {
			t.Fatalf("round %d: C_Initialize: %v", round, err)
		}
		if err := ctx.Initialize(); !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			t.Fatalf("round %d: second C_Initialize: %v", round, err)
		}
		slot := findSlot(t, ctx, tok.Label)
		if _, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION); err != nil {
			t.Fatalf("round %d: C_OpenSession: %v", round, err)
		}
		if _, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION); !isCode(err, pkcs11.CKR_SESSION_COUNT) {
			t.Fatalf("round %d: second C_OpenSession with a limit of 1: %v", round, err)
		}
		if err := ctx.Finalize(); err != nil {
			t.Fatalf("round %d: C_Finalize: %v", round, err)
		}
		if st := shim.Stats(); st.Initialized || st.OpenSessions != 0 || st.Initializations != round {
			t.Fatalf("round %d: after C_Finalize: %+v", round, st)
		}
	}
	if err := ctx.Finalize(); !isCode(err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		t.Fatalf("C_Finalize of a finalised shim: %v", err)
	}
}

// TestSharedRealModule opens SoftHSM2 directly before the shim: both are
// one SoftHSM2 instance. The shim takes SoftHSM2's
// CKR_CRYPTOKI_ALREADY_INITIALIZED as success, and its C_Finalize closes its
// own sessions but leaves SoftHSM2, and the direct user's session, alone.
func TestSharedRealModule(t *testing.T) {
	tok, shim := setup(t)
	direct := openRaw(t, tok.Module, tok.Label)
	s := direct.open(t)

	ctx, err := configure(tok, shim.Path(), 3)
	if err != nil {
		t.Fatalf("crypto11 through the shim beside a direct user: %v", err)
	}
	key, err := ctx.FindKeyPair(nil, []byte(keyLabel))
	if err != nil {
		_ = ctx.Close()
		t.Fatal(err)
	}
	if err := sign(key); err != nil {
		_ = ctx.Close()
		t.Fatalf("signing through the shim beside a direct user: %v", err)
	}
	if st := shim.Stats(); st.OpenSessions < 2 {
		_ = ctx.Close()
		t.Fatalf("%d sessions open through the shim; want crypto11's persistent one and pooled ones", st.OpenSessions)
	}
	if err := ctx.Close(); err != nil {
		t.Fatal(err)
	}
	if st := shim.Stats(); st.Initialized || st.OpenSessions != 0 {
		t.Fatalf("after closing crypto11: %+v", st)
	}
	if _, err := direct.GetSessionInfo(s); err != nil {
		t.Fatalf("the direct session after the shim was finalised: %v", err)
	}
	if _, err := direct.OpenSession(direct.slot, pkcs11.CKF_SERIAL_SESSION); err != nil {
		t.Fatalf("SoftHSM2 after the shim was finalised: %v", err)
	}
}

// TestConcurrentSigning signs from many goroutines with fewer HSM sessions
// than crypto11 wants. Whatever the interleaving, the limit holds, each
// refusal is one failed signature, and every other signature is valid.
func TestConcurrentSigning(t *testing.T) {
	tok, shim := setup(t)
	_, key := openCrypto11(t, tok, shim, 8)
	shim.SetSessionLimit(3)

	var (
		mu      sync.Mutex
		refused int
		wg      sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for range 4 {
				err := sign(key)
				switch {
				case isCode(err, pkcs11.CKR_SESSION_COUNT):
					mu.Lock()
					refused++
					mu.Unlock()
				case err != nil:
					t.Errorf("signature: %v", err)
				}
			}
		})
	}
	wg.Wait()
	st := shim.Stats()
	if st.PeakSessions > 3 || st.OpenSessions > 3 {
		t.Errorf("%d sessions open, %d at peak; the limit is 3", st.OpenSessions, st.PeakSessions)
	}
	if st.SessionCountRefusals != refused {
		t.Errorf("the shim refused %d sessions; %d signatures failed for it", st.SessionCountRefusals, refused)
	}
	t.Logf("%d of 64 signatures refused a session; peak %d sessions", refused, st.PeakSessions)
}

// TestControlErrors edits the control file by hand: the shim counts the
// line it does not understand and keeps working.
func TestControlErrors(t *testing.T) {
	tok, shim := setup(t)
	raw := openRaw(t, shim.Path(), tok.Label)
	f, err := os.OpenFile(shim.ControlFile(), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString("fail C_Nonsense 0x30 1 1\n")
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.GetTokenInfo(raw.slot); err != nil {
		t.Fatal(err)
	}
	if st := shim.Stats(); st.ControlErrors != 1 {
		t.Fatalf("%d control errors; want 1", st.ControlErrors)
	}
	shim.Clear()
	if _, err := raw.GetTokenInfo(raw.slot); err != nil {
		t.Fatal(err)
	}
	if st := shim.Stats(); st.ControlErrors != 0 {
		t.Fatalf("%d control errors after Clear; want 0", st.ControlErrors)
	}
}

// BenchmarkGetSessionInfo measures what the shim adds to a cheap call: a
// stat of the control file and two short critical sections.
func BenchmarkGetSessionInfo(b *testing.B) {
	tok, shim := setup(b)
	shimmed := openRaw(b, shim.Path(), tok.Label)
	s := shimmed.open(b)
	direct := openRaw(b, tok.Module, tok.Label) // the same SoftHSM2 instance
	for _, bb := range []struct {
		name string
		ctx  rawModule
	}{{"direct", direct}, {"shim", shimmed}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bb.ctx.GetSessionInfo(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
