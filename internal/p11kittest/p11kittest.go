// Package p11kittest serves a SoftHSM2 token over a Unix socket with
// `p11-kit server`, as the stand-in for a network HSM, so that tests can cut
// the connection (Kill) and bring the HSM back (Restart) while the code under
// test keeps running.
//
// The code under test loads p11-kit's client module (ClientModule) instead
// of SoftHSM2; every PKCS#11 call then travels over the socket to a
// `p11-kit remote` process that the server forks for the connection and
// that has SoftHSM2 loaded. Killing those processes breaks the client's
// connection the way a lost network HSM does, with real PKCS#11 return
// values from the real client module and no mock in between.
//
// The client module finds the server through the environment variable
// P11_KIT_SERVER_ADDRESS, which it reads once, when the module is loaded
// (C_GetFunctionList, that is pkcs11.New or crypto11.Configure), and never
// again. Start sets it for the test with t.Setenv. The environment is
// process-wide, so a test binary can use one Server at a time, and t.Setenv
// refuses parallel tests, which keeps it so.
//
// What p11-kit's client (0.24.1, Debian bookworm) does when the
// connection breaks, as the tests beside this file show:
//
//   - It connects only in C_Initialize and never reconnects by itself.
//     After Kill, every call that needs the server (C_Sign, C_SignInit,
//     C_GetSessionInfo, C_GetTokenInfo, C_GetSlotList, C_OpenSession,
//     C_Login, even C_GetInfo) fails at once, in microseconds, with
//     CKR_DEVICE_ERROR, and keeps failing so after Restart.
//   - C_Finalize after a blip returns CKR_OK at once, and C_Initialize then
//     connects anew: Finalize plus Initialize of the same loaded module,
//     then a new session and login, is the whole recovery. The token keeps
//     its slot ID.
//   - C_Initialize while the server is down returns CKR_OK but leaves the
//     module unconnected until the next Finalize and Initialize, even once
//     the server is back: C_GetSlotList then lists no slots (CKR_OK),
//     C_GetInfo gives a stand-in ("p11-kit (no connection)"), slot calls
//     fail with CKR_SLOT_ID_INVALID and session calls with
//     CKR_SESSION_HANDLE_INVALID. So a liveness probe must be a call on a
//     slot or session (C_GetSessionInfo, C_GetTokenInfo), never
//     C_GetSlotList or C_GetInfo.
//   - It has no timeout: while the server does not answer (Freeze), a call
//     blocks until it does or the connection breaks.
//   - Every load of the module (each C_GetFunctionList: each pkcs11.New or
//     crypto11.Configure) is a connection and a PKCS#11 application of its
//     own, so one load's login does not reach another's sessions.
package p11kittest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// AddressEnv is the environment variable in which p11-kit's client module
// looks for the server.
const AddressEnv = "P11_KIT_SERVER_ADDRESS"

// Timeouts are generous because they only bound failures: a healthy server
// is listening, or dead, well within a second even on a loaded machine.
const (
	startTimeout = 30 * time.Second
	killTimeout  = 30 * time.Second
)

// Server is a running (or killed) `p11-kit server` serving one token.
type Server struct {
	t      testing.TB
	tok    softhsmtest.Token
	client string
	dir    string // holds the socket and the log, removed by the cleanup
	socket string
	log    string

	mu   sync.Mutex
	proc *process // nil while killed
}

// process is one run of the server.
type process struct {
	cmd *exec.Cmd
	// stdoutDone is closed when the server's stdout reaches end of file, so
	// that Kill can wait for the goroutine reading it (tests check for
	// leaked goroutines).
	stdoutDone chan struct{}
}

// Start serves tok with `p11-kit server` on a new socket, points the client
// module at it (t.Setenv(AddressEnv, …)), and stops the server and removes
// the socket when the test ends. It fails the test if p11-kit, its server
// or its client module is not installed: a test that skips the network HSM
// would prove nothing.
func Start(t testing.TB, tok softhsmtest.Token) *Server {
	t.Helper()
	if softhsmtest.Module() == "" {
		t.Fatal("p11kittest: softhsmtest.Main was not called from TestMain")
	}
	client, err := FindClientModule()
	if err != nil {
		t.Fatalf("p11kittest: %v", err)
	}
	becomeSubreaper(t)
	// Not t.TempDir: its path holds the test's name and can exceed the
	// 107 bytes a Unix socket path may have.
	dir, err := os.MkdirTemp(shortTempDir(), "p11kit-")
	if err != nil {
		t.Fatalf("p11kittest: %v", err)
	}
	s := &Server{
		t:      t,
		tok:    tok,
		client: client,
		dir:    dir,
		socket: filepath.Join(dir, "pkcs11.sock"),
		log:    filepath.Join(dir, "server.log"),
	}
	t.Cleanup(s.cleanup)
	t.Setenv(AddressEnv, s.Address())
	if err := s.start(); err != nil {
		t.Fatalf("p11kittest: %v", err)
	}
	return s
}

// ClientModule is the path of p11-kit's client module: the PKCS#11 module
// the code under test loads to reach the token through the server.
func (s *Server) ClientModule() string { return s.client }

// SocketPath is the server's Unix socket. It stays the same across
// Restart, as a network HSM's address does.
func (s *Server) SocketPath() string { return s.socket }

// Address is the socket in the form P11_KIT_SERVER_ADDRESS takes.
func (s *Server) Address() string { return "unix:path=" + s.socket }

// Token is the served token as the code under test should name it: the
// client module, with the token's label and user PIN. Code that loads the
// module twice and counts on one load's login for the other's sessions (as
// package hsm does with crypto11 and a raw session) sees no private objects
// through it: each load is an application of its own.
func (s *Server) Token() hsm.Token {
	return hsm.Token{Module: s.client, Label: s.tok.Label, PIN: s.tok.PIN}
}

// Running reports whether the server is up (started and not killed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Log is what the server and its per-connection processes wrote to
// standard error so far, for failure messages.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return string(b)
}

// Kill is the network blip: it kills the server and every process it forked
// for a client connection, and returns once all of them have exited, so a
// client's existing connection is broken, not just the listener gone.
// (p11-kit server forks a `p11-kit remote` per connection, and that process
// would outlive a server killed alone.) The socket file stays, so a client
// connecting meanwhile is refused, as by a host whose service is down.
// Killing a killed server does nothing. Call it from the test's goroutine.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.kill(); err != nil {
		s.t.Fatalf("p11kittest: %v", err)
	}
}

// Restart is the HSM coming back: a new server on the same socket path,
// serving the same token. It kills the running server first, if any, so it
// also serves as a bounce. Call it from the test's goroutine.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.kill(); err != nil {
		s.t.Fatalf("p11kittest: %v", err)
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("p11kittest: %v", err)
	}
}

// Freeze is a network partition rather than a reset: it stops (SIGSTOP)
// the server and its per-connection processes, so connections stay open
// but nothing answers. p11-kit's client has no timeout of its own: a call
// made meanwhile blocks until Thaw, or until Kill breaks the connection
// (then it fails with CKR_DEVICE_ERROR). Freeze returns once every process
// has stopped. Call it from the test's goroutine.
func (s *Server) Freeze() {
	s.t.Helper()
	if err := s.signal(unix.SIGSTOP, 'T'); err != nil {
		s.t.Fatalf("p11kittest: freezing the server: %v", err)
	}
}

// Thaw ends Freeze: the processes continue and answer the calls that were
// waiting. Call it from the test's goroutine.
func (s *Server) Thaw() {
	s.t.Helper()
	if err := s.signal(unix.SIGCONT, 0); err != nil {
		s.t.Fatalf("p11kittest: thawing the server: %v", err)
	}
}

// signal sends sig to the server's process group and, if state is not 0,
// waits until every process in it is in that state.
func (s *Server) signal(sig unix.Signal, state byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return errors.New("the server is not running")
	}
	pgid := s.proc.cmd.Process.Pid
	if err := unix.Kill(-pgid, sig); err != nil {
		return err
	}
	if state == 0 {
		return nil
	}
	// Signals are delivered asynchronously: a process is stopped only
	// once /proc says so.
	deadline := time.Now().Add(killTimeout)
	for {
		pids, err := groupMembers(pgid)
		if err != nil {
			return err
		}
		var moving []int
		for _, pid := range pids {
			if st, ok := readStat(pid); ok && st.state != state {
				moving = append(moving, pid)
			}
		}
		if len(moving) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v are not in state %c %v after %v", moving, state, killTimeout, unix.SignalName(sig))
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("server is already running")
	}
	p11kit, err := exec.LookPath("p11-kit")
	if err != nil {
		return fmt.Errorf("p11-kit is not installed (Debian/Ubuntu: apt-get install p11-kit): %w", err)
	}
	logFile, err := os.OpenFile(s.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		return err
	}
	// -f: stay in the foreground, as our child, so that Kill can reach it
	// (without it the server forks, daemonises with setsid and leaves).
	// -s: print the address in Bourne shell syntax whatever $SHELL is; in
	// the foreground it prints it once it listens, which is how start
	// knows it is ready (the socket file alone may be a stale one).
	cmd := exec.Command(p11kit, "server", "-f", "-s",
		"--provider", s.tok.Module,
		"-n", s.socket,
		tokenURI(s.tok.Label))
	// SoftHSM2 in the per-connection processes must read this test
	// binary's token directory; it is in the environment already, but say
	// it explicitly so that the server does not depend on that.
	cmd.Env = os.Environ()
	if dir := softhsmtest.Dir(); dir != "" { // SoftHSM2; opencryptoki needs nothing
		cmd.Env = append(cmd.Env, "SOFTHSM2_CONF="+dir.ConfigFile())
	}
	cmd.Stdout = stdoutW
	cmd.Stderr = logFile // a file, not a pipe: the server's children inherit it
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A process group of its own, so that Kill reaches the children
		// the server forks per connection with one signal.
		Setpgid: true,
		// If the test binary dies without its cleanups (a panic, -timeout),
		// the server dies with it; its children then see their client's end
		// of the socket close and exit.
		Pdeathsig: syscall.SIGKILL,
	}
	err = cmd.Start()
	stdoutW.Close()
	if err != nil {
		stdout.Close()
		return fmt.Errorf("starting p11-kit server: %w", err)
	}
	p := &process{cmd: cmd, stdoutDone: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		defer close(p.stdoutDone)
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		listening := false
		for sc.Scan() {
			if !listening && strings.HasPrefix(sc.Text(), AddressEnv+"=") {
				listening = true
				ready <- true
			}
		}
		if !listening {
			ready <- false
		}
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	var why string
	select {
	case ok := <-ready:
		if ok {
			s.proc = p
			return nil
		}
		why = "it exited before listening"
	case <-timer.C:
		why = fmt.Sprintf("it was not listening after %v", startTimeout)
	}
	if err := stop(p); err != nil {
		why += "; " + err.Error()
	}
	return fmt.Errorf("p11-kit server for token %q on %s: %s; its log:\n%s", s.tok.Label, s.socket, why, s.Log())
}

func (s *Server) kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	p := s.proc
	s.proc = nil
	if err := stop(p); err != nil {
		return fmt.Errorf("killing p11-kit server on %s: %w", s.socket, err)
	}
	return nil
}

// stop kills the server's process group and waits until every process in
// it has exited and been reaped.
func stop(p *process) error {
	pgid := p.cmd.Process.Pid
	// One signal to the group reaches the server and every child, and the
	// kernel lets no fork slip past it. SIGKILL, because SIGTERM makes the
	// server leave its children running.
	if err := unix.Kill(-pgid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signalling process group %d: %w", pgid, err)
	}
	_ = p.cmd.Wait() // "signal: killed", as intended
	<-p.stdoutDone
	// The server's children were orphaned when it died and, since this
	// process is a subreaper, handed to us: reap them.
	deadline := time.Now().Add(killTimeout)
	for {
		reapGroup(pgid)
		left, err := groupMembers(pgid)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of the server's group %d are still running %v after SIGKILL", left, pgid, killTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reapGroup collects every exited child of ours in the process group.
func reapGroup(pgid int) {
	for {
		var status unix.WaitStatus
		pid, err := unix.Wait4(-pgid, &status, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return // none exited yet (0), or none of ours left (ECHILD)
		}
	}
}

// groupMembers lists the processes of the group that still hold resources
// or that we still have to reap. A zombie whose parent is someone else has
// closed its files (the connection among them) and is not ours to reap.
func groupMembers(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.pgrp != pgid {
			continue
		}
		if st.state == 'Z' && st.ppid != self {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

type procStat struct {
	state      byte
	ppid, pgrp int
}

// readStat parses /proc/PID/stat; false if the process is gone.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields that follow start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:])) // state ppid pgrp …
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp}, true
}

var subreaper struct {
	once sync.Once
	err  error
}

// becomeSubreaper makes this process the reaper of its orphaned
// descendants. When the server dies, the children it forked per connection
// are orphaned; without this they go to PID 1, and an init that reaps late
// or never (as in some containers and micro-VMs) keeps them as zombies for
// a while or for good. As their reaper, Kill collects them before it
// returns, so that nothing of the server is left when it does. It is
// process-wide, but harmless to the rest of a test binary: Go waits for its
// own children by PID, and other orphans would only stay zombies until the
// binary exits.
func becomeSubreaper(t testing.TB) {
	t.Helper()
	subreaper.once.Do(func() {
		subreaper.err = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	})
	if subreaper.err != nil {
		t.Fatalf("p11kittest: becoming a child subreaper: %v", subreaper.err)
	}
}

// cleanup stops the server and removes its directory, and shows the
// server's log if the test failed.
func (s *Server) cleanup() {
	if err := s.kill(); err != nil {
		s.t.Errorf("p11kittest: %v", err)
	}
	if s.t.Failed() {
		s.t.Logf("p11-kit server log:\n%s", s.Log())
	}
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Errorf("p11kittest: %v", err)
	}
}

// tokenURI is the PKCS#11 URI (RFC 7512) that selects the token by label;
// the server exports only that token. Everything outside the unreserved
// characters is percent-encoded.
func tokenURI(label string) string {
	var b strings.Builder
	b.WriteString("pkcs11:token=")
	for i := 0; i < len(label); i++ {
		c := label[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// shortTempDir is $TMPDIR unless it is too long to leave room for the
// socket's name within a Unix socket path's 107 bytes.
func shortTempDir() string {
	if dir := os.TempDir(); len(dir) <= 64 {
		return dir
	}
	return "/tmp"
}

// multiarch is the Debian multiarch directory of this architecture.
var multiarch = map[string]string{
	"amd64":   "x86_64-linux-gnu",
	"arm64":   "aarch64-linux-gnu",
	"386":     "i386-linux-gnu",
	"arm":     "arm-linux-gnueabihf",
	"ppc64le": "powerpc64le-linux-gnu",
	"s390x":   "s390x-linux-gnu",
	"riscv64": "riscv64-linux-gnu",
}

// ClientModuleCandidates are where Debian and Ubuntu (multiarch, for the
// running architecture: a module of another one would not load), Fedora
// and Arch install p11-kit's client module.
func ClientModuleCandidates() []string {
	var paths []string
	if triplet, ok := multiarch[runtime.GOARCH]; ok {
		paths = append(paths, "/usr/lib/"+triplet+"/pkcs11/p11-kit-client.so")
	}
	return append(paths,
		"/usr/lib64/pkcs11/p11-kit-client.so",
		"/usr/lib/pkcs11/p11-kit-client.so",
	)
}

// FindClientModule returns the path of p11-kit's client module.
func FindClientModule() (string, error) {
	candidates := ClientModuleCandidates()
	for _, path := range candidates {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("p11-kit's client module is not installed (Debian/Ubuntu: apt-get install p11-kit-modules); looked for %s", strings.Join(candidates, ", "))
}
