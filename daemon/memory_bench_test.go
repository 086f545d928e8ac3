package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// The load of the memory measurement.
const (
	memoryCallers     = 1000
	memoryConnections = 100
	memoryCallsEach   = 20
)

// BenchmarkPeakRSS runs `portvakt serve` as a process, built without the
// race detector (which multiplies memory), and has memoryCallers callers
// ask it for a cached token memoryCallsEach times each, at once, over
// memoryConnections mutual TLS connections; it reports the daemon's peak
// resident set (VmHWM) in MiB. Each round is a daemon of its own. Set
// PORTVAKT_RSS_BINARY to measure another build (an older commit's):
//
//	go test -run '^$' -bench PeakRSS -benchtime 3x ./daemon
func BenchmarkPeakRSS(b *testing.B) {
	binary := os.Getenv("PORTVAKT_RSS_BINARY")
	if binary == "" {
		binary = filepath.Join(b.TempDir(), "portvakt")
		if out, err := exec.Command("go", "build", "-o", binary, "github.com/portvakt/portvakt/cmd/portvakt").CombinedOutput(); err != nil {
			b.Fatalf("building portvakt: %v\n%s", err, out)
		}
	}
	w := mptest.New(b, mptest.Options{NoSigner: true})
	var peak, idle float64
	for range b.N {
		idleKiB, peakKiB := peakRSSUnderLoad(b, w, binary)
		peak, idle = max(peak, float64(peakKiB)/1024), max(idle, float64(idleKiB)/1024)
	}
	b.ReportMetric(peak, "peak-MiB")
	b.ReportMetric(idle, "idle-MiB")
	b.ReportMetric(0, "ns/op")
}

// peakRSSUnderLoad starts a daemon process, loads it and returns its
// resident set before the load (after one call) and its peak, in KiB.
func peakRSSUnderLoad(b *testing.B, w *mptest.World, binary string) (idle, peak int) {
	e := prepare(b, w)
	addr := freeLoopbackAddress(b)
	e.edit(b, func(cfg string) string {
		cfg = strings.Replace(cfg, `address: "127.0.0.1:0", cert_file`, fmt.Sprintf("address: %q, cert_file", addr), 1)
		return strings.Replace(cfg, "log: {level: debug}", "log: {level: info}", 1)
	})
	cmd := exec.Command(binary, "serve", "--config", e.cfgFile)
	logFile, err := os.Create(filepath.Join(e.dir, "portvakt.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	opts := client.Options{Address: addr, CertFile: e.clientCert, KeyFile: e.clientKey, CAFile: filepath.Join(e.dir, "ca.pem")}
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	conns := make([]*client.Client, memoryConnections)
	for i := range conns {
		conns[i] = dial(b, opts)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) { // a hang guard
		_, err := conns[0].API().GetToken(b.Context(), req) // warms the cache, too
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logFile.Name())
			b.Fatalf("the daemon did not answer: %v; its log:\n%s", err, out)
		}
	}
	idle = procStatus(b, cmd.Process.Pid, "VmHWM")
	var wg sync.WaitGroup
	errs := make(chan error, memoryCallers)
	start := make(chan struct{})
	for i := range memoryCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range memoryCallsEach {
				if _, err := conns[i%memoryConnections].API().GetToken(context.Background(), req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return idle, procStatus(b, cmd.Process.Pid, "VmHWM")
}

// procStatus is a size in a process's /proc/<pid>/status (VmHWM: the peak
// resident set), in KiB.
func procStatus(b *testing.B, pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return kib
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// freeLoopbackAddress is a loopback TCP address nothing listens on now.
func freeLoopbackAddress(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
