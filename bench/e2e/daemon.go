package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// buildPortvakt builds the command into dir without the race detector
// (internal/testbinary builds it with -race), with the build tags given:
// none is the daemon as shipped, what is measured.
func buildPortvakt(dir string, tags ...string) (string, error) {
	name, args := "portvakt", []string{"build"}
	if len(tags) > 0 {
		name += "-" + strings.Join(tags, "-")
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	bin := filepath.Join(dir, name)
	out, err := exec.Command("go", append(args, "-o", bin, "github.com/portvakt/portvakt/cmd/portvakt")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building portvakt %s: %v\n%s", strings.Join(tags, " "), err, out)
	}
	return bin, nil
}

// daemonProcess is `portvakt serve` running as its own process.
type daemonProcess struct {
	cmd      *exec.Cmd
	logFile  string
	done     chan error
	stopOnce sync.Once
}

// startDaemon runs binary on w's configuration, with env added to its
// environment, and waits until its socket answers the health check.
func startDaemon(ctx context.Context, binary string, w *world, env ...string) (*daemonProcess, error) {
	logFile := filepath.Join(w.dir, "portvakt.log")
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "serve", "--config", w.cfgFile)
	cmd.Env = append(append(os.Environ(), pinEnv+"="+w.token.PIN.Reveal()), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting portvakt: %w", err)
	}
	p := &daemonProcess{cmd: cmd, logFile: logFile, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); log.Close() }()

	conn, err := grpc.NewClient("unix://"+w.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.stop()
		return nil, err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("portvakt exited at start (%v); its log:\n%s", err, p.log())
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("portvakt did not answer on %s within 30 s (%v); its log:\n%s", w.socket, err, p.log())
		}
	}
}

func (p *daemonProcess) log() string {
	out, _ := os.ReadFile(p.logFile)
	return string(out)
}

func (p *daemonProcess) pid() int { return p.cmd.Process.Pid }

// stop ends the daemon with SIGTERM, as systemd does, and waits; again,
// it does nothing.
func (p *daemonProcess) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// peakRSS is the daemon's VmHWM in bytes.
func (p *daemonProcess) peakRSS() (int64, error) { return p.status("VmHWM") }

// status is one of the sizes in /proc/PID/status (kB there), in bytes.
func (p *daemonProcess) status(field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", field, rest, err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/PID/status", field)
}

// metric reads one unlabelled sample from the daemon's metrics.
func metric(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("the daemon's metrics have no %s", name)
}

// auditSnapshot is the size of every audit file, rotated ones included.
type auditSnapshot map[string]int64

func snapshotAudit(dir string) (auditSnapshot, error) {
	files, err := filepath.Glob(filepath.Join(dir, "audit", "*.log"))
	if err != nil {
		return nil, err
	}
	s := auditSnapshot{}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		s[f] = st.Size()
	}
	return s, nil
}

// growthSince is what the audit files gained since before, in bytes and
// in records (lines): only the new bytes are read.
func (s auditSnapshot) growthSince(before auditSnapshot) (bytesN, records int64, err error) {
	for f, size := range s {
		from := before[f]
		if size <= from {
			continue
		}
		file, err := os.Open(f)
		if err != nil {
			return 0, 0, err
		}
		data := make([]byte, size-from)
		_, err = file.ReadAt(data, from)
		file.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s: %w", f, err)
		}
		bytesN += size - from
		records += int64(bytes.Count(data, []byte{'\n'}))
	}
	return bytesN, records, nil
}
