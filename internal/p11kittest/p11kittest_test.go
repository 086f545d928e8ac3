package p11kittest

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// callTimeout only tells a hang from an answer: every call in these tests
// answers in milliseconds, loaded machine or not.
const callTimeout = 30 * time.Second

const keyLabel = "blip"

// client is a long-lived user of p11-kit's client module through
// github.com/miekg/pkcs11 directly, as the daemon is: the module stays
// loaded for the whole test, across blips.
type client struct {
	t       *testing.T
	tok     softhsmtest.Token
	ctx     *pkcs11.Ctx
	slot    uint
	session pkcs11.SessionHandle
	key     pkcs11.ObjectHandle
}

// newToken is a token with a signing key, served through a new Server.
func newToken(t *testing.T) (softhsmtest.Token, *Server) {
	t.Helper()
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, keyLabel)
	return tok, Start(t, tok)
}

// connect loads the client module, initialises it and logs in.
func connect(t *testing.T, tok softhsmtest.Token, srv *Server) *client {
	t.Helper()
	ctx := pkcs11.New(srv.ClientModule())
	if ctx == nil {
		t.Fatalf("loading %s failed", srv.ClientModule())
	}
	t.Cleanup(ctx.Destroy)
	c := &client{t: t, tok: tok, ctx: ctx}
	if err := c.call(func() error { return ctx.Initialize() }); err != nil {
		t.Fatalf("C_Initialize: %v", err)
	}
	t.Cleanup(func() { _ = ctx.Finalize() })
	if err := c.login(); err != nil {
		t.Fatalf("logging in through the server: %v", err)
	}
	return c
}

// call runs f and fails the test if it does not return within callTimeout:
// a call that hangs is a finding of its own, not something to wait out.
func (c *client) call(f func() error) error {
	c.t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(callTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		c.t.Fatalf("a PKCS#11 call did not return within %v", callTimeout)
		return nil
	}
}

// login finds the token's slot by label, opens a session, logs in and finds
// the key: what a signer does after (re)initialising the module.
func (c *client) login() error {
	return c.call(func() error {
		slots, err := c.ctx.GetSlotList(true)
		if err != nil {
			return err
		}
		found := false
		for _, slot := range slots {
			info, err := c.ctx.GetTokenInfo(slot)
			if err == nil && info.Label == c.tok.Label {
				c.slot, found = slot, true
				break
			}
		}
		if !found {
			return errors.New("the token is not in the slot list " + strconv.Itoa(len(slots)))
		}
		if c.session, err = c.ctx.OpenSession(c.slot, pkcs11.CKF_SERIAL_SESSION); err != nil {
			return err
		}
		if err := c.ctx.Login(c.session, pkcs11.CKU_USER, c.tok.PIN.Reveal()); err != nil {
			return err
		}
		if err := c.ctx.FindObjectsInit(c.session, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, keyLabel),
		}); err != nil {
			return err
		}
		keys, _, err := c.ctx.FindObjects(c.session, 2)
		_ = c.ctx.FindObjectsFinal(c.session)
		if err != nil {
			return err
		}
		if len(keys) != 1 {
			return errors.New("found " + strconv.Itoa(len(keys)) + " keys")
		}
		c.key = keys[0]
		return nil
	})
}

// sign makes an RSA PKCS#1 v1.5 signature with the key.
func (c *client) sign() error {
	return c.call(func() error {
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil)}
		if err := c.ctx.SignInit(c.session, mech, c.key); err != nil {
			return err
		}
		sig, err := c.ctx.Sign(c.session, []byte("portvakt"))
		if err == nil && len(sig) != 256 {
			err = errors.New("the signature has " + strconv.Itoa(len(sig)) + " bytes")
		}
		return err
	})
}

// reinitialise is the recovery p11-kit's client needs after a blip:
// finalise and initialise the loaded module again, and log in anew.
func (c *client) reinitialise() error {
	c.t.Helper()
	if err := c.call(c.ctx.Finalize); err != nil {
		return err
	}
	if err := c.call(func() error { return c.ctx.Initialize() }); err != nil {
		return err
	}
	return c.login()
}

func (c *client) mustSign() {
	c.t.Helper()
	if err := c.sign(); err != nil {
		c.t.Fatalf("signing through the server: %v", err)
	}
}

// wantCode fails the test unless err is the PKCS#11 return value want.
func wantCode(t *testing.T, what string, err error, want uint) {
	t.Helper()
	if !errors.Is(err, pkcs11.Error(want)) {
		t.Errorf("%s: got %v, want %v", what, err, pkcs11.Error(want))
	}
}

// A blip breaks the connection for good: every call fails at once with
// CKR_DEVICE_ERROR, the client module does not reconnect when the server
// is back, and C_Finalize plus C_Initialize of the same loaded module is
// all the recovery takes.
func TestBlipNeedsReinitialise(t *testing.T) {
	tok, srv := newToken(t)
	c := connect(t, tok, srv)
	c.mustSign()
	slot := c.slot

	srv.Kill()
	if srv.Running() {
		t.Error("Running after Kill")
	}
	probes := func(when string) {
		t.Helper()
		wantCode(t, when+": sign", c.sign(), pkcs11.CKR_DEVICE_ERROR)
		wantCode(t, when+": C_GetSessionInfo", c.call(func() error { _, err := c.ctx.GetSessionInfo(c.session); return err }), pkcs11.CKR_DEVICE_ERROR)
		wantCode(t, when+": C_GetTokenInfo", c.call(func() error { _, err := c.ctx.GetTokenInfo(c.slot); return err }), pkcs11.CKR_DEVICE_ERROR)
		wantCode(t, when+": C_GetSlotList", c.call(func() error { _, err := c.ctx.GetSlotList(true); return err }), pkcs11.CKR_DEVICE_ERROR)
		wantCode(t, when+": C_OpenSession", c.call(func() error { _, err := c.ctx.OpenSession(c.slot, pkcs11.CKF_SERIAL_SESSION); return err }), pkcs11.CKR_DEVICE_ERROR)
	}
	probes("server killed")

	srv.Restart()
	if !srv.Running() {
		t.Error("not Running after Restart")
	}
	probes("server back, module not reinitialised")

	if err := c.reinitialise(); err != nil {
		t.Fatalf("reinitialising the client module after the server came back: %v", err)
	}
	if c.slot != slot {
		t.Errorf("the token moved from slot %d to %d", slot, c.slot)
	}
	c.mustSign()
}

// C_Initialize while the server is down succeeds but leaves the module
// unconnected: no slots, stand-in answers, and it stays so after the server
// is back, until the next C_Finalize and C_Initialize.
func TestInitialiseWhileDown(t *testing.T) {
	tok, srv := newToken(t)
	c := connect(t, tok, srv)
	srv.Kill()
	if err := c.call(c.ctx.Finalize); err != nil {
		t.Fatalf("C_Finalize after a blip: %v", err)
	}
	if err := c.call(func() error { return c.ctx.Initialize() }); err != nil {
		t.Fatalf("C_Initialize with the server down: got %v, want CKR_OK", err)
	}
	unconnected := func(when string) {
		t.Helper()
		var slots []uint
		err := c.call(func() (err error) { slots, err = c.ctx.GetSlotList(true); return })
		if err != nil || len(slots) != 0 {
			t.Errorf("%s: C_GetSlotList = %v, %v; want no slots", when, slots, err)
		}
		var info pkcs11.Info
		err = c.call(func() (err error) { info, err = c.ctx.GetInfo(); return })
		if err != nil || !strings.Contains(info.LibraryDescription, "no connection") {
			t.Errorf("%s: C_GetInfo = %q, %v; want p11-kit's stand-in", when, info.LibraryDescription, err)
		}
		wantCode(t, when+": C_GetTokenInfo", c.call(func() error { _, err := c.ctx.GetTokenInfo(c.slot); return err }), pkcs11.CKR_SLOT_ID_INVALID)
		wantCode(t, when+": C_GetSessionInfo", c.call(func() error { _, err := c.ctx.GetSessionInfo(c.session); return err }), pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	unconnected("server down")
	srv.Restart()
	unconnected("server back")
	if err := c.reinitialise(); err != nil {
		t.Fatalf("reinitialising after the server came back: %v", err)
	}
	c.mustSign()
}

// Kill ends the server and the process it forked for the client's
// connection, and reaps them: nothing is left, not even a zombie.
func TestKillEndsConnectionProcesses(t *testing.T) {
	tok, srv := newToken(t)
	c := connect(t, tok, srv)
	c.mustSign()
	pgid := srv.pgid()
	pids := group(t, pgid)
	if len(pids) < 2 {
		t.Fatalf("the server's group is %v; want the server and its connection's process", pids)
	}
	srv.Kill()
	if left := group(t, pgid); len(left) != 0 {
		t.Errorf("after Kill, processes %v of group %d are left", left, pgid)
	}
	srv.Kill() // a second Kill does nothing
	wantCode(t, "sign after Kill", c.sign(), pkcs11.CKR_DEVICE_ERROR)
}

// Blips leave nothing behind in the client process: no descriptor (the old
// connection's socket is closed by C_Finalize), no goroutine, and no
// process of the server.
func TestNoLeaksOverBlips(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last
	tok, srv := newToken(t)
	c := connect(t, tok, srv)
	blip := func() {
		t.Helper()
		pgid := srv.pgid()
		srv.Kill()
		if left := group(t, pgid); len(left) != 0 {
			t.Fatalf("after Kill, processes %v of group %d are left", left, pgid)
		}
		if err := c.sign(); err == nil {
			t.Fatal("signing worked with the server killed")
		}
		srv.Restart()
		if err := c.reinitialise(); err != nil {
			t.Fatalf("reinitialising after the blip: %v", err)
		}
		c.mustSign()
	}
	// The first blip opens what the runtime and the module open once.
	blip()
	before := openFDs(t)
	for range 5 {
		blip()
	}
	// Descriptors are closed synchronously, but allow for a finaliser.
	deadline := time.Now().Add(callTimeout)
	for {
		after := openFDs(t)
		if len(after) <= len(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 blips leaked %d file descriptors: %s", len(after)-len(before), DescribeFDs(before, after))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Freeze is a partition: a call waits, neither failing nor answering, and
// answers after Thaw; Kill while frozen makes the waiting call fail.
func TestFreeze(t *testing.T) {
	tok, srv := newToken(t)
	c := connect(t, tok, srv)

	srv.Freeze()
	done := make(chan error, 1)
	go func() { _, err := c.ctx.GetSessionInfo(c.session); done <- err }()
	// Only a lower bound can show a call waiting; a call that returned
	// while the server is stopped is wrong however loaded the machine.
	select {
	case err := <-done:
		t.Fatalf("C_GetSessionInfo returned (%v) while the server was frozen", err)
	case <-time.After(100 * time.Millisecond):
	}
	srv.Thaw()
	if err := waitFor(t, done); err != nil {
		t.Fatalf("C_GetSessionInfo after Thaw: %v", err)
	}
	c.mustSign()

	srv.Freeze()
	go func() { _, err := c.ctx.GetSessionInfo(c.session); done <- err }()
	srv.Kill()
	wantCode(t, "C_GetSessionInfo waiting when the frozen server was killed", waitFor(t, done), pkcs11.CKR_DEVICE_ERROR)
}

// The cleanup stops everything and removes the socket, and the address
// variable goes back to what it was.
func TestCleanupLeavesNothing(t *testing.T) {
	prior, hadPrior := os.LookupEnv(AddressEnv)
	var pgid int
	var dir string
	t.Run("served", func(t *testing.T) {
		tok, srv := newToken(t)
		if got := os.Getenv(AddressEnv); got != srv.Address() || !strings.HasPrefix(got, "unix:path=") {
			t.Errorf("%s = %q, want %q", AddressEnv, got, srv.Address())
		}
		c := connect(t, tok, srv)
		c.mustSign()
		pgid, dir = srv.pgid(), srv.dir
	})
	if left := group(t, pgid); len(left) != 0 {
		t.Errorf("after the test, processes %v of the server's group %d are left", left, pgid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server's directory %s is left: %v", dir, err)
	}
	if now, has := os.LookupEnv(AddressEnv); now != prior || has != hadPrior {
		t.Errorf("%s is %q after the test, was %q", AddressEnv, now, prior)
	}
}

// Every load of the client module (every C_GetFunctionList, that is every
// pkcs11.New or crypto11.Configure) is a connection of its own, served by a
// process of its own: a PKCS#11 application of its own. A second context
// in the same process is therefore not logged in by the first one's login,
// unlike with SoftHSM2 loaded directly, where both share one application.
func TestEachLoadIsItsOwnApplication(t *testing.T) {
	tok, srv := newToken(t)
	if got := srv.Token(); got.Module != srv.ClientModule() || got.Label != tok.Label || got.PIN != tok.PIN {
		t.Errorf("Token() = %+v, want the client module with the token's label and PIN", got)
	}
	first := connect(t, tok, srv)

	second := pkcs11.New(srv.ClientModule())
	if second == nil {
		t.Fatal("loading the client module a second time failed")
	}
	t.Cleanup(second.Destroy)
	// With SoftHSM2 loaded directly this is CKR_CRYPTOKI_ALREADY_INITIALIZED.
	if err := first.call(func() error { return second.Initialize() }); err != nil {
		t.Fatalf("C_Initialize of the second load: got %v, want CKR_OK", err)
	}
	t.Cleanup(func() { _ = second.Finalize() })
	var state uint
	err := first.call(func() error {
		session, err := second.OpenSession(first.slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return err
		}
		info, err := second.GetSessionInfo(session)
		state = info.State
		return err
	})
	if err != nil {
		t.Fatalf("a session of the second load: %v", err)
	}
	if state != pkcs11.CKS_RO_PUBLIC_SESSION {
		t.Errorf("the second load's session is in state %d, want %d (public: the first load's login does not reach it)", state, pkcs11.CKS_RO_PUBLIC_SESSION)
	}
	if n := len(group(t, srv.pgid())); n != 3 {
		t.Errorf("the server's group has %d processes, want 3: the server and one per load", n)
	}
}

func TestTokenURI(t *testing.T) {
	for label, want := range map[string]string{
		"test-1-2":  "pkcs11:token=test-1-2",
		"a b;c/d%":  "pkcs11:token=a%20b%3Bc%2Fd%25",
		"Portvakt~": "pkcs11:token=Portvakt~",
		"bl\u00e5":  "pkcs11:token=bl%C3%A5",
	} {
		if got := tokenURI(label); got != want {
			t.Errorf("tokenURI(%q) = %q, want %q", label, got, want)
		}
	}
}

func TestOpenFDsSeesNewDescriptors(t *testing.T) {
	before := openFDs(t)
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	after := openFDs(t)
	f.Close()
	if got := after[fd]; got != "/dev/null" {
		t.Errorf("descriptor %d refers to %q, want /dev/null; %s", fd, got, DescribeFDs(before, after))
	}
	if len(after) != len(before)+1 {
		t.Errorf("%d descriptors after opening one, %d before: %s", len(after), len(before), DescribeFDs(before, after))
	}
}

// pgid is the server's process group, for tests that check what is left.
func (s *Server) pgid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// group lists every process in the group, zombies included.
func group(t *testing.T, pgid int) []int {
	t.Helper()
	if pgid <= 0 {
		t.Fatalf("no process group %d", pgid)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.pgrp == pgid {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

func openFDs(t *testing.T) map[int]string {
	t.Helper()
	fds, err := OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	return fds
}

func waitFor(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(callTimeout):
		t.Fatalf("a PKCS#11 call did not return within %v", callTimeout)
		return nil
	}
}
