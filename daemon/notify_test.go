package daemon_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// notifySocket is systemd's side of the readiness protocol: a datagram
// socket of the test's own, named in NOTIFY_SOCKET (and WATCHDOG_USEC set
// when watchdog > 0) for the daemons the test starts, in process or not.
type notifySocket struct {
	messages chan string
}

func listenNotify(t *testing.T, watchdog time.Duration) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "pvn") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", fmt.Sprint(watchdog.Microseconds()))
	}
	n := &notifySocket{messages: make(chan string, 1000)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.messages <- string(buf[:k])
		}
	}()
	return n
}

// next is the next message other than a watchdog ping.
func (n *notifySocket) next(t *testing.T, what string) string {
	t.Helper()
	timeout := time.After(20 * time.Second) // a hang guard
	for {
		select {
		case m := <-n.messages:
			if m != "WATCHDOG=1" {
				return m
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s from the daemon", what)
		}
	}
}

// pings counts the watchdog pings until the deadline, failing on any
// other message.
func (n *notifySocket) pings(t *testing.T, d time.Duration) int {
	t.Helper()
	count, deadline := 0, time.After(d)
	for {
		select {
		case m := <-n.messages:
			if m != "WATCHDOG=1" {
				t.Fatalf("unexpected message %q", m)
			}
			count++
		case <-deadline:
			return count
		}
	}
}

// pingGap is the mean time between k+1 consecutive watchdog pings,
// failing on any other message.
func (n *notifySocket) pingGap(t *testing.T, k int) time.Duration {
	t.Helper()
	var first time.Time
	for i := 0; i <= k; i++ {
		select {
		case m := <-n.messages:
			if m != "WATCHDOG=1" {
				t.Fatalf("unexpected message %q", m)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("timed out waiting for watchdog pings")
		}
		if i == 0 {
			// Any pings queued since READY are behind us: from here on
			// they come as sent.
			for len(n.messages) > 0 {
				if m := <-n.messages; m != "WATCHDOG=1" {
					t.Fatalf("unexpected message %q", m)
				}
			}
			first = time.Now()
		}
	}
	return time.Since(first) / time.Duration(k)
}

func lines(m string) []string { return strings.Split(m, "\n") }

func hasLine(m, line string) bool {
	for _, l := range lines(m) {
		if l == line {
			return true
		}
	}
	return false
}

// TestNotifyInProcess: READY=1 comes once the listeners answer; then
// WATCHDOG=1 at half WATCHDOG_USEC; STOPPING=1 when shutdown starts, and
// no ping after Serve returned.
func TestNotifyInProcess(t *testing.T) {
	n := listenNotify(t, 400*time.Millisecond)
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := prepare(t, w)
	e.serve(t)

	ready := n.next(t, "READY=1")
	if lines(ready)[0] != "READY=1" || !hasLine(ready, "STATUS=serving") {
		t.Fatalf("first message %q, want READY=1 and its STATUS", ready)
	}
	// Ready means the socket answers.
	c, err := client.Dial(client.Options{Socket: e.daemon.Addresses()["unix"]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.API().WhoAmI(t.Context(), &portvaktv1.WhoAmIRequest{}); err != nil {
		t.Fatalf("WhoAmI after READY=1: %v", err)
	}
	// Every 200 ms: half the interval, well inside it.
	if gap := n.pingGap(t, 4); gap < 150*time.Millisecond || gap > 350*time.Millisecond {
		t.Fatalf("watchdog pings %s apart at WATCHDOG_USEC=400000, want about 200ms", gap)
	}

	e.stop()
	stopping := n.next(t, "STOPPING=1")
	if lines(stopping)[0] != "STOPPING=1" {
		t.Fatalf("message at shutdown %q, want STOPPING=1", stopping)
	}
	// Serve has returned (stop waited for it): past the pings sent while
	// the servers stopped, there are none.
	time.Sleep(100 * time.Millisecond) // for the reader to queue what was sent
	for len(n.messages) > 0 {
		if m := <-n.messages; m != "WATCHDOG=1" {
			t.Fatalf("unexpected message %q after STOPPING=1", m)
		}
	}
	if got := n.pings(t, 500*time.Millisecond); got != 0 {
		t.Fatalf("%d watchdog pings after Serve returned", got)
	}
}

// TestNotifyWithoutWatchdog: without WATCHDOG_USEC there are no pings.
func TestNotifyWithoutWatchdog(t *testing.T) {
	n := listenNotify(t, 0)
	w := mptest.New(t, mptest.Options{NoSigner: true})
	startDaemon(t, w)
	if m := n.next(t, "READY=1"); lines(m)[0] != "READY=1" {
		t.Fatalf("first message %q, want READY=1", m)
	}
	if got := n.pings(t, 300*time.Millisecond); got != 0 {
		t.Fatalf("%d watchdog pings without WATCHDOG_USEC", got)
	}
}

// TestNotifyProcess runs `portvakt serve` as systemd would: READY=1,
// watchdog pings, RELOADING=1 with MONOTONIC_USEC then READY=1 around
// the reload SIGHUP asks for, and STOPPING=1 on SIGTERM; and the start
// log line says which build runs.
func TestNotifyProcess(t *testing.T) {
	n := listenNotify(t, 400*time.Millisecond)
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := prepare(t, w)
	p := startProcess(t, e, 0) // returns once the socket answers
	if m := n.next(t, "READY=1"); lines(m)[0] != "READY=1" {
		t.Fatalf("first message %q, want READY=1", m)
	}
	if got := n.pings(t, 500*time.Millisecond); got < 1 {
		t.Fatal("no watchdog ping in 500 ms at WATCHDOG_USEC=400000")
	}

	before := monotonicNow(t)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading := n.next(t, "RELOADING=1")
	if lines(reloading)[0] != "RELOADING=1" {
		t.Fatalf("message after SIGHUP %q, want RELOADING=1", reloading)
	}
	usec := regexp.MustCompile(`(?m)^MONOTONIC_USEC=(\d+)$`).FindStringSubmatch(reloading)
	if usec == nil {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	if got, _ := strconv.ParseInt(usec[1], 10, 64); got < before || got > monotonicNow(t) {
		t.Fatalf("MONOTONIC_USEC=%d is not between %d and now", got, before)
	}
	if m := n.next(t, "READY=1 after the reload"); lines(m)[0] != "READY=1" || !hasLine(m, "STATUS=serving") {
		t.Fatalf("message after the reload %q, want READY=1 and STATUS=serving", m)
	}

	stopProcess(t, p)
	if m := n.next(t, "STOPPING=1"); lines(m)[0] != "STOPPING=1" {
		t.Fatalf("message at SIGTERM %q, want STOPPING=1", m)
	}

	// The binary's version and revision are its own build's, not this
	// test's: that they are there is what can be checked.
	for _, line := range processLog(t, e) {
		if line["msg"] == "portvakt started" {
			if line["version"] == nil || line["revision"] == nil || line["goversion"] != runtime.Version() {
				t.Fatalf("the start line does not say which build runs: %v", line)
			}
			return
		}
	}
	t.Fatal("no start line in the log")
}

// monotonicNow is CLOCK_MONOTONIC in microseconds, as systemd reads it.
func monotonicNow(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}
