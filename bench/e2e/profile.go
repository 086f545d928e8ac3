package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"
)

// profiler collects profiles when the harness runs with -profile DIR:
// of every round, a CPU profile of the daemon (a build with -tags pprof,
// serving net/http/pprof on a loopback port) as <round>-N.pprof and one
// of this process (load client, simulator, bare signatures) as
// harness-<round>-N.pprof; and the daemon's heap halfway through the
// peak-RSS round. Read them with `go tool pprof DIR/<name>.pprof`. Off,
// every method does nothing.
type profiler struct {
	dir    string
	addr   string         // the daemon's pprof listener
	rounds map[string]int // rounds of each name profiled so far
}

// newProfiler prepares dir; an empty dir turns profiling off.
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
	return &profiler{dir: dir, addr: addr, rounds: map[string]int{}}, nil
}

func (p *profiler) on() bool { return p.dir != "" }

// build makes the daemon's binary with the pprof endpoint compiled in.
func (p *profiler) build(dir string) (string, error) { return buildPortvakt(dir, "pprof") }

// env is what the daemon's process needs to serve its profiles.
func (p *profiler) env() []string {
	if !p.on() {
		return nil
	}
	return []string{"PORTVAKT_PPROF=" + p.addr}
}

// round starts the CPU profiles of a round of length d named name, the
// daemon's and this process's, and returns the function that ends them
// and waits for them to be saved. The daemon's profile is whole seconds
// long, d rounded down (a counted round's: about that much of its
// start); a round under a second is not profiled.
func (p *profiler) round(name string, d time.Duration) (wait func() error) {
	secs := int(d / time.Second)
	if !p.on() || secs < 1 {
		return func() error { return nil }
	}
	p.rounds[name]++
	base := fmt.Sprintf("%s-%d.pprof", name, p.rounds[name])
	done := make(chan error, 1)
	go func() { done <- p.save(fmt.Sprintf("profile?seconds=%d", secs), filepath.Join(p.dir, base)) }()
	own, err := os.Create(filepath.Join(p.dir, "harness-"+base))
	if err == nil {
		if err = pprof.StartCPUProfile(own); err != nil {
			own.Close()
		}
	}
	return func() error {
		if err != nil {
			<-done
			return err
		}
		pprof.StopCPUProfile()
		if err := own.Close(); err != nil {
			<-done
			return err
		}
		return <-done
	}
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

// stop says where the profiles are.
func (p *profiler) stop(progress io.Writer) {
	if !p.on() {
		return
	}
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
