// Package p11fault gives tests a PKCS#11 module that wraps a real one
// (SoftHSM2) and injects the faults real HSMs produce and SoftHSM2 never
// produces on demand: CKR_SESSION_COUNT when the HSM's sessions run out,
// CKR_DEVICE_MEMORY, CKR_FUNCTION_CANCELED, CKR_DEVICE_REMOVED,
// CKR_PIN_LOCKED on login, slow answers. The code under test loads the
// shim by its path like any module (crypto11.Config.Path, pkcs11.New), so
// every layer above the module is the real one.
//
// The shim is a small C library (shim/shim.c), compiled with gcc once per
// test binary. A test controls it through a file the shim re-reads whenever
// it changes, so faults can be switched while a long-lived process (the
// daemon, in this process or a child) keeps the module open. The shim keeps
// counters in a second file, which Stats reads.
//
// # One shim, one process-wide configuration
//
// A PKCS#11 module is initialised once per process, and the shim takes its
// settings from the environment ([EnvModule], [EnvControl]) when it is
// initialised. New sets them with t.Setenv, so a test using the shim cannot
// be parallel, and everything in the process (and its children) that
// initialises the shim from then on uses that test's control file. A test
// must close every crypto11 context and pkcs11.Ctx on the shim before it
// ends; New's cleanup reports a shim left initialised.
//
// # Sharing the real module
//
// dlopen of one path gives one instance, so the shim's SoftHSM2 and a
// SoftHSM2 the test loads directly are the same module, with one
// C_Initialize and one login state. The shim behaves as a module of its
// own: if the real module is already initialised when the shim is, the shim
// answers CKR_OK, and its C_Finalize then closes only the sessions opened
// through it and leaves the real module to its owner. The other way round
// is the real module's rule: once the shim has initialised SoftHSM2, a direct
// C_Initialize gets CKR_CRYPTOKI_ALREADY_INITIALIZED (crypto11.Configure on
// the SoftHSM2 path fails then), and finalising the shim finalises
// SoftHSM2. So create tokens and keys (softhsmtest) before opening the shim.
package p11fault

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvModule names the environment variable holding the path of the real
// module. The shim reads it when it is first loaded, and refuses to
// initialise if it later names another module while the shim stays loaded.
const EnvModule = "P11FAULT_MODULE"

// EnvControl names the environment variable holding the path of the
// control file. The shim reads it at each C_Initialize; its counters go to
// the same path with ".stats" appended.
const EnvControl = "P11FAULT_CONTROL"

// Functions are the PKCS#11 functions the shim wraps, the ones Fail, Delay
// and Stats know. The others in the function list go straight to the real
// module. The list matches WRAPPED in shim/shim.c.
var Functions = []string{
	"C_Initialize", "C_Finalize", "C_GetInfo", "C_GetSlotList",
	"C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList",
	"C_GetMechanismInfo", "C_OpenSession", "C_CloseSession",
	"C_CloseAllSessions", "C_GetSessionInfo", "C_Login", "C_Logout",
	"C_CreateObject", "C_DestroyObject", "C_GetAttributeValue",
	"C_SetAttributeValue", "C_FindObjectsInit", "C_FindObjects",
	"C_FindObjectsFinal", "C_SignInit", "C_Sign", "C_SignUpdate",
	"C_SignFinal", "C_GenerateKeyPair", "C_GenerateRandom",
}

//go:embed shim/shim.c
var shimSource []byte

var built struct {
	once sync.Once
	path string
	err  error
}

// Build compiles the shim and returns the path of the shared library. It
// runs gcc at most once per test binary: the library is cached in a
// directory under os.TempDir named by a hash of the source, the headers and
// the flags, so later test binaries reuse it. It fails the test, with gcc's
// output, if the shim does not compile.
//
// The PKCS#11 headers are miekg/pkcs11's, found with `go list -m`, so the
// test must run inside this module (as `go test` runs it).
func Build(t testing.TB) string {
	t.Helper()
	built.once.Do(func() { built.path, built.err = build() })
	if built.err != nil {
		t.Fatalf("p11fault: %v", built.err)
	}
	return built.path
}

func build() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/miekg/pkcs11")
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			out = exit.Stderr
		}
		return "", fmt.Errorf("finding miekg/pkcs11's PKCS#11 headers with %v: %v\n%s", cmd.Args, err, out)
	}
	include := strings.TrimSpace(string(out))
	args := []string{"-std=gnu11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-shared", "-fPIC", "-I", include}
	libs := []string{"-ldl", "-lpthread"}

	sum := sha256.New()
	sum.Write(shimSource)
	for _, h := range []string{"pkcs11.h", "pkcs11t.h", "pkcs11f.h"} {
		b, err := os.ReadFile(filepath.Join(include, h))
		if err != nil {
			return "", fmt.Errorf("PKCS#11 headers: %w", err)
		}
		sum.Write(b)
	}
	fmt.Fprintln(sum, args, libs)
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	lib := filepath.Join(dir, "p11fault-"+hex.EncodeToString(sum.Sum(nil))[:16]+".so")
	if _, err := os.Stat(lib); err == nil {
		return lib, nil
	}

	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	src, tmp := filepath.Join(work, "shim.c"), filepath.Join(work, "shim.so")
	if err := os.WriteFile(src, shimSource, 0o600); err != nil {
		return "", err
	}
	gcc := exec.Command("gcc", slices.Concat(args, []string{"-o", tmp, src}, libs)...)
	if out, err := gcc.CombinedOutput(); err != nil {
		return "", fmt.Errorf("compiling the shim: %v: %v\n%s", gcc.Args, err, out)
	}
	// A hard link appears whole, so a test binary beside us never loads
	// half a file, and never replaces a library another one has loaded.
	if err := os.Link(tmp, lib); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return lib, nil
}

// cacheDir is a directory only this user can write: anyone who could
// replace the library could run code in the tests. Should the shared name be
// taken by something else, a private directory for this test binary does.
func cacheDir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("p11fault-%d", os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	info, err := os.Lstat(dir)
	if err == nil && info.IsDir() && info.Mode().Perm() == 0o700 && ownedByMe(info) {
		return dir, nil
	}
	return os.MkdirTemp("", "p11fault-")
}

// Module is one test's control of the shim.
type Module struct {
	t       testing.TB
	path    string
	control string

	mu     sync.Mutex
	gen    uint64
	limit  int
	fails  map[string]failRule
	delays map[string]time.Duration
}

type failRule struct {
	code  uint
	times int
	id    uint64
}

// New builds the shim, gives it an empty control file in a temporary
// directory of the test, and points it at realModule by setting
// [EnvModule] and [EnvControl] with t.Setenv. The variables are
// process-wide and are read by the C module when it is initialised, so the
// shim must not be initialised when New is called (no test may leave it
// so), and the test cannot be parallel. Load the module at Path.
func New(t testing.TB, realModule string) *Module {
	t.Helper()
	m := &Module{
		t:       t,
		path:    Build(t),
		control: filepath.Join(t.TempDir(), "control"),
		fails:   map[string]failRule{},
		delays:  map[string]time.Duration{},
	}
	m.mu.Lock()
	m.write()
	m.mu.Unlock()
	t.Setenv(EnvModule, realModule)
	t.Setenv(EnvControl, m.control)
	t.Cleanup(func() {
		if m.Stats().Initialized {
			t.Errorf("p11fault: the shim is still initialised at the end of the test: close every crypto11 context and pkcs11.Ctx on %s, or later tests get this test's faults", m.path)
		}
	})
	return m
}

// Path is the shim's file name: the module to load instead of the real one.
func (m *Module) Path() string { return m.path }

// ControlFile is the control file's path, for a child process that should
// use it (it inherits the environment New set) or for a look in a failing
// test.
func (m *Module) ControlFile() string { return m.control }

// SetSessionLimit makes C_OpenSession answer CKR_SESSION_COUNT, without
// opening a session, while n sessions opened through the shim are open, as
// an HSM whose sessions have run out. The count includes sessions opened
// before the limit was set; C_CloseSession, C_CloseAllSessions and
// C_Finalize lower it. n = 0 removes the limit. The limit is per process:
// sessions opened directly on the real module, or in another process, do not
// count.
func (m *Module) SetSessionLimit(n int) {
	m.t.Helper()
	if n < 0 {
		m.t.Fatalf("p11fault: session limit %d: want 0 (none) or more", n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limit = n
	m.write()
}

// Fail makes function answer code (a pkcs11.CKR_... constant) for its next
// times calls, or for every call until Clear when times is 0. Each Fail
// starts counting anew, and the count survives the shim being finalised and
// unloaded (as crypto11 does when a Configure fails), so "the next call"
// means one call.
//
// Most functions fail without reaching the real module, as an HSM that
// refuses a request. Functions that release something (C_CloseSession,
// C_CloseAllSessions, C_Logout, C_FindObjectsFinal, C_Finalize) run in the
// real module first and only their answer is replaced: an HSM that fails
// them has dropped the session or login anyway. A faulted C_Sign,
// C_SignUpdate or C_SignFinal ends the real signing operation, as PKCS#11
// says a failed one does. miekg/pkcs11 makes two C_Sign calls per
// signature (length, then signature), so Fail("C_Sign", code, 1) fails one
// signature.
//
// Call it from the test's goroutine: a bad argument fails the test.
func (m *Module) Fail(function string, code uint, times int) {
	m.t.Helper()
	m.check(function)
	if code == 0 {
		m.t.Fatalf("p11fault: Fail(%s) with CKR_OK: give the error code to answer", function)
	}
	if times < 0 {
		m.t.Fatalf("p11fault: Fail(%s) %d times: want 0 (until cleared) or more", function, times)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fails[function] = failRule{code: code, times: times, id: m.gen + 1}
	m.write()
}

// Delay holds every call of function for d (rounded up to a millisecond)
// before it runs, as a slow or busy HSM; d = 0 removes the delay. A held
// call keeps its session busy, and a fail rule on the function is applied
// after the delay, which models a timeout. Clearing or shortening the delay
// releases calls already held, within a few milliseconds, so a test can
// hold a call for an hour, see it held in Stats, and let it go.
func (m *Module) Delay(function string, d time.Duration) {
	m.t.Helper()
	m.check(function)
	if d < 0 {
		m.t.Fatalf("p11fault: Delay(%s, %v): want 0 or more", function, d)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d == 0 {
		delete(m.delays, function)
	} else {
		m.delays[function] = d
	}
	m.write()
}

// Clear removes every fault: the session limit, the fail rules and the
// delays. The counters in Stats are kept.
func (m *Module) Clear() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limit = 0
	clear(m.fails)
	clear(m.delays)
	m.write()
}

func (m *Module) check(function string) {
	m.t.Helper()
	if !slices.Contains(Functions, function) {
		m.t.Fatalf("p11fault: the shim does not wrap %q; it wraps %s", function, strings.Join(Functions, ", "))
	}
}

// write replaces the control file. The shim notices a change by stat(2),
// so every version is a new file (rename gives it a new inode) with an
// mtime of its own, the generation number in seconds: a second write within
// one tick of the file system's clock could otherwise look unchanged.
// Called with m.mu held.
func (m *Module) write() {
	m.t.Helper()
	m.gen++
	var b strings.Builder
	fmt.Fprintf(&b, "# p11fault control file, generation %d\n", m.gen)
	if m.limit > 0 {
		fmt.Fprintf(&b, "limit %d\n", m.limit)
	}
	for _, f := range Functions {
		if r, ok := m.fails[f]; ok {
			fmt.Fprintf(&b, "fail %s 0x%x %d %d\n", f, r.code, r.times, r.id)
		}
		if d, ok := m.delays[f]; ok {
			fmt.Fprintf(&b, "delay %s %d\n", f, (d+time.Millisecond-1)/time.Millisecond)
		}
	}
	tmp := m.control + ".tmp"
	mtime := time.Unix(int64(m.gen), 0)
	err := os.WriteFile(tmp, []byte(b.String()), 0o600)
	if err == nil {
		err = os.Chtimes(tmp, mtime, mtime)
	}
	if err == nil {
		err = os.Rename(tmp, m.control)
	}
	if err != nil {
		m.t.Fatalf("p11fault: writing the control file: %v", err)
	}
}

// Stats are the shim's counters. They count from New on, across
// initialisations and reloads of the shim, for this process.
type Stats struct {
	// Initialized is whether the shim is between C_Initialize and
	// C_Finalize.
	Initialized bool
	// Initializations counts successful C_Initialize answers.
	Initializations int
	// OpenSessions is how many sessions opened through the shim are open.
	OpenSessions int
	// PeakSessions is the most that were open at once.
	PeakSessions int
	// SessionCountRefusals counts the CKR_SESSION_COUNT answers the session
	// limit gave (a Fail rule's answers are counted in Funcs only).
	SessionCountRefusals int
	// ControlErrors counts the lines of the current control file that the
	// shim did not understand; always 0 unless the file was edited by hand.
	ControlErrors int
	// Funcs holds the counters of each wrapped function, by name.
	Funcs map[string]FuncStats
}

// FuncStats are the counters of one wrapped function.
type FuncStats struct {
	// Calls counts every call, faulted or not.
	Calls int
	// Faults counts the answers the shim made up: fail rules, and for
	// C_OpenSession the session limit.
	Faults int
	// Delayed counts the calls a delay held.
	Delayed int
	// Active is how many calls are inside the shim now (held by a delay or
	// running in the real module).
	Active int
}

// The stats file's layout, as struct stats in shim.c.
const (
	statsMagic      = "p11flt1\x00"
	statsHeaderSize = 8 + 8*8
	fnNameSize      = 32
	fnStatsSize     = fnNameSize + 8*8
)

// Stats reads the shim's counters. Before the shim is first initialised
// with this test's control file they are all zero.
func (m *Module) Stats() Stats {
	m.t.Helper()
	stats := m.control + ".stats"
	var last error
	// The shim updates the file in place; two equal reads with an even
	// sequence number are a consistent snapshot.
	for range 1000 {
		a, err := os.ReadFile(stats)
		if errors.Is(err, fs.ErrNotExist) {
			return Stats{Funcs: map[string]FuncStats{}}
		}
		if err != nil {
			m.t.Fatalf("p11fault: reading the stats: %v", err)
		}
		b, err := os.ReadFile(stats)
		if err != nil {
			m.t.Fatalf("p11fault: reading the stats: %v", err)
		}
		if bytes.Equal(a, b) {
			s, err := parseStats(a)
			if err == nil {
				return s
			}
			last = err
		}
		time.Sleep(100 * time.Microsecond)
	}
	m.t.Fatalf("p11fault: no consistent read of %s: %v", stats, last)
	return Stats{}
}

var errTorn = errors.New("an update was under way")

func parseStats(b []byte) (Stats, error) {
	s := Stats{Funcs: map[string]FuncStats{}}
	if len(b) < statsHeaderSize || bytes.Equal(b[:8], make([]byte, 8)) {
		return s, nil // the shim is still creating it
	}
	if string(b[:8]) != statsMagic {
		return s, fmt.Errorf("not a p11fault stats file of this version (magic %q)", b[:8])
	}
	u := func(off int) int { return int(binary.NativeEndian.Uint64(b[off:])) }
	if u(8)%2 != 0 {
		return s, errTorn
	}
	n := u(16)
	if len(b) < statsHeaderSize+n*fnStatsSize {
		return s, fmt.Errorf("stats file of %d bytes is too short for %d functions", len(b), n)
	}
	s.Initialized = u(24) != 0
	s.Initializations = u(32)
	s.OpenSessions = u(40)
	s.PeakSessions = u(48)
	s.SessionCountRefusals = u(56)
	s.ControlErrors = u(64)
	for i := range n {
		off := statsHeaderSize + i*fnStatsSize
		name := string(bytes.TrimRight(b[off:off+fnNameSize], "\x00"))
		off += fnNameSize
		s.Funcs[name] = FuncStats{Calls: u(off), Faults: u(off + 8), Delayed: u(off + 16), Active: u(off + 24)}
	}
	return s, nil
}

// Await polls Stats until cond holds, and returns those Stats. It fails the
// test after 30 seconds, printing the last Stats. Use it to wait for what
// another goroutine or process does to the shim (a call being held, a
// session opened) instead of sleeping. Call it from the test's goroutine.
func (m *Module) Await(what string, cond func(Stats) bool) Stats {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := m.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("p11fault: waited 30s for %s; stats: %+v", what, s)
		}
		time.Sleep(time.Millisecond)
	}
}
