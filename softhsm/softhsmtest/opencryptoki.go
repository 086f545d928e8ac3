package softhsmtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/secret"
)

// opencryptoki keeps its configuration, its slot daemon (pkcsslotd) and its
// tokens machine-wide, and its soft token (3.8, Debian bookworm) serves one
// token per machine: the library that serves soft-token slots keeps the
// token's state in globals, so with two such slots configured a process
// sees one slot's objects in the other, fails to log in to the second
// (CKR_USER_ANOTHER_ALREADY_LOGGED_IN) or crashes initialising it. So the
// tests use the one soft-token slot of Debian's stock configuration, whose
// data is /var/lib/opencryptoki/swtok:
//
//   - one test binary at a time (a machine-wide file lock, which the kernel
//     releases when the binary exits, however it exits);
//   - one token at a time in it, which each test re-initialises
//     (C_InitToken destroys what the test before left) with a fresh label
//     and user PIN; a second NewToken while a test's token is alive fails.
//
// A soft token that holds a token not made by these tests is never
// re-initialised: Main refuses to run.
const (
	ockDataDir = "/var/lib/opencryptoki"
	ockTokDir  = "swtok" // the soft token's directory in ockDataDir (no tokname in the configuration)
	ockPIDFile = "/var/run/pkcsslotd.pid"
	ockSocket  = "/var/run/pkcsslotd.socket"
	ockLockDir = "/run/lock/portvakt-test"
	// ockModel is CK_TOKEN_INFO.model of opencryptoki's soft token.
	ockModel = "IBM SoftTok"
	// ockLabelPrefix marks the tokens these tests make.
	ockLabelPrefix = "portvakt-test-"
	// ockSOPIN is the soft token's security officer PIN. opencryptoki's
	// C_InitToken checks the SO PIN against the token's current one (the
	// default, 87654321, until changed) rather than setting it, so every
	// test token keeps the default.
	ockSOPIN = "87654321"
	// ockPINLength is the user PIN's length: opencryptoki 3.8's soft token
	// takes PINs of 4 to 8 bytes (CK_TOKEN_INFO ulMinPinLen, ulMaxPinLen).
	ockPINLength = 8
)

// OpenCryptokiModuleCandidates are where Debian, Ubuntu and Fedora install
// opencryptoki's PKCS#11 library.
var OpenCryptokiModuleCandidates = []string{
	"/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib/s390x-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib64/opencryptoki/libopencryptoki.so",
	"/usr/lib/opencryptoki/libopencryptoki.so",
}

var (
	ockSlot   uint   // the soft token's slot
	ockUnlock func() // releases the machine-wide lock; never called
)

func prepareOpenCryptoki() (err error) {
	for _, path := range OpenCryptokiModuleCandidates {
		if _, err := os.Stat(path); err == nil {
			module = path
			break
		}
	}
	if module == "" {
		return errors.New("opencryptoki is not installed: run scripts/install-deps.sh (Debian/Ubuntu: apt-get install opencryptoki)")
	}
	if err = ensurePkcsslotd(); err != nil {
		return err
	}
	// Held until the process exits (ockUnlock keeps the file open: a
	// collected *os.File would close it and so release the lock).
	ockUnlock, err = lockFile("opencryptoki", false)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		fmt.Fprintln(os.Stderr, "softhsmtest: waiting for another test binary to finish with opencryptoki's soft token")
		ockUnlock, err = lockFile("opencryptoki", true)
	}
	if err != nil {
		return err
	}
	// A test binary killed while the token was taken away left it moved
	// (takeAwayOpenCryptoki); no other binary can be mid-outage now.
	if _, err := os.Stat(filepath.Join(ockDataDir, ockTokDir)); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(filepath.Join(ockDataDir, "away-"+ockTokDir), filepath.Join(ockDataDir, ockTokDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("bringing back the soft token that an interrupted test took away: %w", err)
		}
	}
	m, err := p11.Open(module)
	if err != nil {
		return fmt.Errorf("%w (is pkcsslotd running, and is this user in group pkcs11?)", err)
	}
	defer m.Close()
	slots, err := m.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("listing opencryptoki's slots: %w", err)
	}
	var soft []uint
	var info pkcs11.TokenInfo
	for _, s := range slots {
		if ti, err := m.GetTokenInfo(s); err == nil && strings.TrimSpace(ti.Model) == ockModel {
			soft, info = append(soft, s), ti
		}
	}
	switch {
	case len(soft) == 0:
		return fmt.Errorf("opencryptoki (%s) has no soft-token slot: /etc/opencryptoki/opencryptoki.conf needs one with stdll = libpkcs11_sw.so (Debian's default has slot 3)", module)
	case len(soft) > 1:
		return fmt.Errorf("opencryptoki has %d soft-token slots (%v): its soft token mixes up two slots in one process; configure one", len(soft), soft)
	}
	ockSlot = soft[0]
	if label := strings.TrimSpace(info.Label); info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && !strings.HasPrefix(label, ockLabelPrefix) {
		return fmt.Errorf("opencryptoki's soft token (slot %d) holds token %q, which these tests did not make: they re-initialise the token, destroying what it holds; if that may go, re-initialise it with a label starting with %q (pkcsconf -I -c %d; the SO PIN is 87654321 unless changed)", ockSlot, label, ockLabelPrefix, ockSlot)
	}
	return nil
}

// ensurePkcsslotd starts opencryptoki's slot daemon unless it runs. It
// outlives the test binary, as a system daemon does; the next run finds it.
func ensurePkcsslotd() error {
	if pkcsslotdRunning() {
		return nil
	}
	unlock, err := lockFile("pkcsslotd", true) // one starter among parallel test binaries
	if err != nil {
		return err
	}
	defer unlock()
	if pkcsslotdRunning() {
		return nil
	}
	daemon, err := exec.LookPath("pkcsslotd")
	if err != nil {
		if daemon, err = exec.LookPath("/usr/sbin/pkcsslotd"); err != nil {
			return errors.New("pkcsslotd not found: install opencryptoki (scripts/install-deps.sh)")
		}
	}
	// pkcsslotd forks into the background. Its output is a buffer, not the
	// test binary's: go test waits for whoever holds that open.
	if out, err := exec.Command(daemon).CombinedOutput(); err != nil {
		return fmt.Errorf("starting pkcsslotd: %v: %s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); !pkcsslotdRunning(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("pkcsslotd did not come up within 10 s")
		}
	}
	return nil
}

func pkcsslotdRunning() bool {
	data, err := os.ReadFile(ockPIDFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	_, err = os.Stat(ockSocket)
	return err == nil
}

// lockFile takes the lock named name in ockLockDir, waiting when wait is
// set, and returns how to release it. The kernel releases it when the
// process dies.
func lockFile(name string, wait bool) (unlock func(), err error) {
	if err := os.MkdirAll(ockLockDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(ockLockDir, name), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}

var (
	ockMu    sync.Mutex
	ockOwner string // the test whose token the soft token is now
)

// newOpenCryptokiToken re-initialises the soft token with a unique label:
// C_InitToken with the SO PIN, then C_InitPIN for a random user PIN.
func newOpenCryptokiToken(t testing.TB) Token {
	t.Helper()
	ockMu.Lock()
	if ockOwner != "" {
		owner := ockOwner
		ockMu.Unlock()
		t.Fatalf("test %s still holds opencryptoki's soft token, which serves one token per machine: a test can have one token at a time (put a second key on it, or call softhsmtest.NeedTokens to skip here)", owner)
	}
	ockOwner = t.Name()
	ockMu.Unlock()
	t.Cleanup(func() {
		ockMu.Lock()
		ockOwner = ""
		ockMu.Unlock()
	})
	label := fmt.Sprintf("%s%d-%d", ockLabelPrefix, os.Getpid(), counter.Add(1))
	userPIN, _ := secret.New(rand.Text()[:ockPINLength])
	soPIN, _ := secret.New(ockSOPIN)
	m, err := p11.Open(module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Ctx.InitToken(ockSlot, ockSOPIN, label); err != nil {
		hint := ""
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_EXISTS)) {
			hint = " (a session on it is still open: did an earlier test leave a signer or session unclosed?)"
		}
		t.Fatalf("re-initialising opencryptoki's soft token (slot %d) as %q: %v%s", ockSlot, label, err, hint)
	}
	session, err := m.Ctx.OpenSession(ockSlot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.CloseSession(session) }()
	if err := m.Login(session, pkcs11.CKU_SO, ockSOPIN); err != nil {
		t.Fatalf("logging in to token %q as security officer: %v", label, err)
	}
	defer func() { _ = m.Logout(session) }()
	if err := m.InitPIN(session, userPIN.Reveal()); err != nil {
		t.Fatalf("setting the user PIN of token %q: %v", label, err)
	}
	return Token{Token: hsm.Token{Module: module, Label: label, PIN: userPIN}, SOPIN: soPIN, slot: ockSlot}
}

// takeAwayOpenCryptoki moves the soft token's directory away and closes
// this process's sessions on its slot, as an HSM restart does.
// opencryptoki keeps a logged-in token's objects in memory, so moving the
// directory alone changes nothing for open sessions; closing them does,
// and the module initialised anew then finds no token in the slot
// (CKR_TOKEN_NOT_PRESENT) until the directory is back.
func (tok Token) takeAwayOpenCryptoki(t testing.TB) (bringBack func()) {
	t.Helper()
	bringBack = tok.moveAway(t, filepath.Join(ockDataDir, ockTokDir), filepath.Join(ockDataDir, "away-"+ockTokDir))
	m, err := p11.Open(module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.CloseAllSessions(tok.slot); err != nil {
		t.Fatalf("closing the sessions on token %q: %v", tok.Label, err)
	}
	return bringBack
}
