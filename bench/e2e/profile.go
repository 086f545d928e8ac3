package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"
)

// profiler collects profiles when the harness runs with -profile DIR:
// the daemon (a build with -tags pprof, serving net/http/pprof on a
// loopback port) gives a CPU profile of every timed round and a heap
// profile at the peak-RSS round's end, and this process (load client,
// simulator, bare signatures) a CPU profile of the whole run. Read them
// with `go tool pprof DIR/<name>.pprof`. Off, every method does nothing.
type profiler struct {
	dir     string
	addr    string // the daemon's pprof listener
	harness *os.File
	rounds  map[string]int // rounds of each name profiled so far
}

// newProfiler prepares dir and starts this process's CPU profile; an
// empty dir turns profiling off.
func newProfiler(dir string) (*profiler, error) {
	if dir == "" {
		return &profiler{}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "harness.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return &profiler{dir: dir, addr: addr, harness: f, rounds: map[string]int{}}, nil
}

func (p *profiler) on() bool { return p.dir != "" }

// build makes the daemon's binary with the pprof endpoint compiled in.
func (p *profiler) build(dir string) (string, error) {
	bin := filepath.Join(dir, "portvakt-pprof")
	out, err := exec.Command("go", "build", "-tags", "pprof", "-o", bin, "github.com/portvakt/portvakt/cmd/portvakt").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building portvakt with -tags pprof: %v\n%s", err, out)
	}
	return bin, nil
}

// env is what the daemon's process needs to serve its profiles.
func (p *profiler) env() []string {
	if !p.on() {
		return nil
	}
	return []string{"PORTVAKT_PPROF=" + p.addr}
}

// round starts a CPU profile of the daemon for a round of length d named
// name, and returns the function that waits for it to be saved.
// Profiles are whole seconds long: a round under a second is not profiled.
func (p *profiler) round(name string, d time.Duration) (wait func() error) {
	secs := int(d / time.Second)
	if !p.on() || secs < 1 {
		return func() error { return nil }
	}
	p.rounds[name]++
	file := filepath.Join(p.dir, fmt.Sprintf("%s-%d.pprof", name, p.rounds[name]))
	done := make(chan error, 1)
	go func() { done <- p.save(fmt.Sprintf("profile?seconds=%d", secs), file) }()
	return func() error { return <-done }
}

// heap saves the daemon's heap profile (in-use and allocated) as name.
func (p *profiler) heap(name string) error {
	if !p.on() {
		return nil
	}
	return p.save("heap", filepath.Join(p.dir, name+".pprof"))
}

func (p *profiler) save(path, file string) error {
	resp, err := http.Get("http://" + p.addr + "/debug/pprof/" + path)
	if err != nil {
		return fmt.Errorf("the daemon's profile %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("the daemon's profile %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// stop ends this process's profile and says where the profiles are.
func (p *profiler) stop(progress io.Writer) {
	if !p.on() {
		return
	}
	pprof.StopCPUProfile()
	p.harness.Close()
	fmt.Fprintf(progress, "profiles in %s (go tool pprof %s/<name>.pprof)\n", p.dir, p.dir)
}

func freeLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
