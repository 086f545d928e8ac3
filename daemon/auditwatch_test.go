package daemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// processHealth is a health client on a daemon process's socket.
func processHealth(t *testing.T, p *process) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+p.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// overallHealth is the daemon's health, which the two names for it must
// agree on (once a change has been set on both: they are set one after
// the other).
func overallHealth(t *testing.T, c healthpb.HealthClient) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	var whole, named healthpb.HealthCheckResponse_ServingStatus
	for range 100 {
		whole, named = healthOf(t, c, ""), healthOf(t, c, portvaktv1.TokenService_ServiceDesc.ServiceName)
		if whole == named {
			return whole
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("health %s for the daemon, %s for its service", whole, named)
	return whole
}

// stopProcess ends the daemon as systemd would (SIGTERM) and waits.
func stopProcess(t *testing.T, p *process) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

// processLog is the log the latest daemon process of e wrote, line by
// line, decoded.
func processLog(t *testing.T, e *env) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.dir, "portvakt-*.log"))
	slices.Sort(files)
	data, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}
	return lines
}

// processMetrics scrapes the daemon process, at the address its start line
// names.
func processMetrics(t *testing.T, e *env) func(name string, labels map[string]string) float64 {
	t.Helper()
	var addr string
	for _, l := range processLog(t, e) {
		if a, ok := l["addresses"].(map[string]any); ok && l["msg"] == "portvakt started" {
			addr, _ = a["metrics"].(string)
		}
	}
	if addr == "" {
		t.Fatal("the daemon's log names no metrics address")
	}
	families := scrape(t, "http://"+addr+"/metrics")
	return func(name string, labels map[string]string) float64 {
		v, ok := value(families, name, labels)
		if !ok {
			t.Fatalf("no metric %s %v", name, labels)
		}
		return v
	}
}

// verifyProcess runs `portvakt audit verify` on the audit directory, as an
// operator would after the fact, and returns what it printed and its exit
// status.
func verifyProcess(t *testing.T, e *env) (string, int) {
	t.Helper()
	cmd := exec.Command(portvaktBinary(t), "audit", "verify", filepath.Join(e.dir, "audit"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out) + stderr.String(), cmd.ProcessState.ExitCode()
}

// assertAuditUnavailable: no token, and why: the audit log.
func assertAuditUnavailable(t *testing.T, resp *portvaktv1.GetTokenResponse, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("a token (%d bytes) was issued while the audit log is unavailable", len(resp.GetAccessToken()))
	}
	st, _ := statusOf(err)
	if st.Code().String() != "Unavailable" || !strings.Contains(st.Message(), "the audit log is unavailable") {
		t.Fatalf("GetToken = %v, want Unavailable saying the audit log is unavailable", err)
	}
}

// TestAuditFileChangedFailsClosed runs `portvakt serve` as a process and
// changes its audit file behind its back, as another process would: the
// next GetToken gets no token, health turns NOT_SERVING, metrics and one
// log line say why, and it stays so until a restart; after the restart
// tokens come again, and `portvakt audit verify` says what happened.
func TestAuditFileChangedFailsClosed(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, path string)
		cause   string
		verdict string // a pattern for verify's gap line
	}{
		{"deleted", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, audit.CauseDeleted, `audit\.log:1: gap record \d+ \(deleted, \S+\): the active file \S+ \(records 1-\d+, \d+ bytes\) was deleted while the daemon had it open; records 1-\d+ are lost: the log holds no record before this one`},
		{"replaced", func(t *testing.T, path string) {
			if err := os.WriteFile(path+".new", []byte(`{"seq":1}`+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, audit.CauseReplaced, `audit\.log:1: gap record \d+ \(replaced, \S+\): another file \(10 bytes\) took the place of the active file .* was deleted; the file found at the path is kept as audit\.log\.replaced\.\d{8}T\d{6}Z; records 1-\d+ are lost`},
		{"truncated", func(t *testing.T, path string) {
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, audit.CauseTruncated, `audit\.log:1: gap record \d+ \(truncated, \S+\): the active file \S+ was truncated while the daemon had it open: it holds \d+ of the \d+ bytes the daemon wrote \(records 1-\d+\); records \d+-\d+ are lost: the log holds records up to \d+, the last of audit\.000000000001-\d{12}\.\d{8}T\d{6}Z\.log; what .* holds after that is not a record as written`},
		{"appended to", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(f, "appended by someone else")
			f.Close()
		}, audit.CauseAppended, `audit\.log:1: gap record \d+ \(appended, \S+\): 25 bytes the daemon did not write were appended to the active file .*; no record is lost; the 25 bytes after the daemon's \d+ in audit\.000000000001-\d{12}\.\d{8}T\d{6}Z\.log are not its own, and were not read`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{})
			e := prepare(t, w)
			p := startProcess(t, e, 0)
			health := processHealth(t, p)
			get := func(i int) (*portvaktv1.GetTokenResponse, error) {
				return p.api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{
					Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d", i)})
			}
			for i := range 3 {
				if _, err := get(i); err != nil {
					t.Fatal(err)
				}
			}
			if s := overallHealth(t, health); s != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health before the change: %s", s)
			}

			tt.change(t, filepath.Join(e.dir, "audit", "audit.log"))
			resp, err := get(100) // a new signature
			assertAuditUnavailable(t, resp, err)
			// Told by the Writer, not found at the next poll: NOT_SERVING now.
			if s := overallHealth(t, health); s != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("health right after the refusal: %s, want NOT_SERVING", s)
			}
			m := processMetrics(t, e)
			if v := m("portvakt_audit_broken", nil); v != 1 {
				t.Errorf("portvakt_audit_broken = %v, want 1", v)
			}
			if v := m("portvakt_audit_gaps_total", map[string]string{"cause": tt.cause}); v != 1 {
				t.Errorf("portvakt_audit_gaps_total{cause=%q} = %v, want 1", tt.cause, v)
			}
			// And so it stays, for a cached token too.
			resp, err = get(0)
			assertAuditUnavailable(t, resp, err)
			stopProcess(t, p)

			var said []map[string]any
			for _, l := range processLog(t, e) {
				if strings.Contains(fmt.Sprint(l["msg"]), "audit log was changed by someone else") {
					said = append(said, l)
				}
			}
			if len(said) != 1 || said[0]["cause"] != tt.cause || said[0]["level"] != "ERROR" || !strings.Contains(fmt.Sprint(said[0]["error"]), "while the daemon had it open") {
				t.Fatalf("the daemon's log says %v; want one error line saying why (cause %s)", said, tt.cause)
			}

			// A restart takes records again, after the gap record.
			p = startProcess(t, e, 0)
			if _, err := get(200); err != nil {
				t.Fatalf("GetToken after the restart: %v", err)
			}
			if s := overallHealth(t, processHealth(t, p)); s != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health after the restart: %s", s)
			}
			stopProcess(t, p)

			out, code := verifyProcess(t, e)
			if code != 5 || !regexp.MustCompile(tt.verdict).MatchString(out) || !strings.Contains(out, "\nGAPS: 1 gap in ") {
				t.Fatalf("portvakt audit verify exited %d, printing:\n%s\nwant status 5 and a line matching %s", code, out, tt.verdict)
			}
		})
	}
}

// TestAuditDeletedNoticedWithoutARequest: a daemon with no requests coming
// still notices its audit file deleted, at its next look (the health
// poll), and says so in its health.
func TestAuditDeletedNoticedWithoutARequest(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	health := healthpb.NewHealthClient(connOf(t, e))
	if err := os.Remove(filepath.Join(e.dir, "audit", "audit.log")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "health NOT_SERVING after the audit file was deleted", func() bool {
		return overallHealth(t, health) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if !strings.Contains(e.logs.String(), `"cause":"deleted"`) {
		t.Errorf("the daemon's log does not say why:\n%s", e.logs.String())
	}
}
