package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/testbinary"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// portvaktBinary is the portvakt command, built once per test binary.
func portvaktBinary(t testing.TB) string { return testbinary.Portvakt(t) }

// runPortvakt runs the built binary and returns what it printed on each
// stream, and its exit status.
func runPortvakt(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(portvaktBinary(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), status
}

// checkSetup is a configuration in front of the simulator, in a fresh
// directory that nothing has run in yet.
type checkSetup struct {
	world *mptest.World
	dir   string
	file  string // the configuration
}

// envLine is the configuration's one environment, as written.
func (s *checkSetup) envLine() string {
	return fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}\n", s.world.Issuer, s.world.Endpoint, mptest.ClientID)
}

func newCheckSetup(t *testing.T) *checkSetup {
	t.Helper()
	if softhsmtest.Implementation() == softhsmtest.SoftHSM2 {
		// The hsm tests' --softhsm-dir points SOFTHSM2_CONF elsewhere.
		t.Setenv("SOFTHSM2_CONF", softhsmtest.Dir().ConfigFile())
	}
	w := mptest.New(t, mptest.Options{NoSigner: true})
	dir, err := os.MkdirTemp("", "pvc") // a short path: the socket's is bounded
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &checkSetup{world: w, dir: dir, file: filepath.Join(dir, "portvakt.yaml")}
	t.Setenv("PORTVAKT_CHECK_PIN", w.Token.PIN.Reveal())
	s.write(t, "policy.yaml", "clients:\n  - name: billing\n    identities: [uid:1000]\n    rules:\n      - {environments: [sim], scopes: ["+mptest.ScopeOwn+"]}\n")
	s.write(t, "portvakt.yaml", fmt.Sprintf(`listen:
  unix: {path: run/portvakt.sock}
hsm: {module: %q, token: %q, pin: {env: PORTVAKT_CHECK_PIN}}
environments:
%spolicy: policy.yaml
audit: {file: audit/audit.log}
log: {format: json}
`, w.Token.Module, w.Token.Label, s.envLine()))
	return s
}

func (s *checkSetup) write(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// edit replaces old, which the configuration must hold, by new.
func (s *checkSetup) edit(t *testing.T, old, new string) {
	t.Helper()
	text, err := os.ReadFile(s.file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), old) {
		t.Fatalf("the configuration does not hold %q:\n%s", old, text)
	}
	s.write(t, "portvakt.yaml", strings.Replace(string(text), old, new, 1))
}

// certifyExpiringIn has the world's CA certify the eseal key again, for
// validity from now, and has the environment use that chain.
func (s *checkSetup) certifyExpiringIn(t *testing.T, validity time.Duration) {
	t.Helper()
	s.write(t, "soon.pem", string(s.world.ESealChainPEM(t, validity)))
	s.edit(t, "key_label: eseal}", "key_label: eseal, certificate_file: soon.pem}")
}

// checkJSON is `serve --check --json`'s document, as a reader decodes it.
type checkJSON struct {
	Checks []struct {
		Name        string `json:"name"`
		Status      string `json:"status"`
		Environment string `json:"environment"`
		Detail      string `json:"detail"`
	} `json:"checks"`
}

// TestServeCheckOutput: `serve --check` prints one line per check, and
// with --json a document holding the same checks, one entry each; it
// exits 0 with warnings alone and 1 when a check failed. A certificate 9
// days from its end (certificates.warn_before 30 days) is a warning, and
// a token endpoint nothing answers on is a failure naming the environment
// and the URL. Before, --check had no --json, passed with the endpoint
// unreachable, and said nothing of the certificate.
func TestServeCheckOutput(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *checkSetup)
		// wantStatus is the exit status; want is a check that must be
		// there: its text line starts with wantLine and holds each of
		// wantDetail.
		wantStatus int
		wantLine   string
		wantJSON   string // the check's status in the JSON
		wantDetail []string
		wantLines  int // how many lines start with wantLine; default 1
	}{
		{
			name:       "all well",
			setup:      func(*testing.T, *checkSetup) {},
			wantLine:   "ok      token endpoint (environment sim): ",
			wantJSON:   "ok",
			wantDetail: []string{"answers (HTTP 400 to a request without a grant)"},
		},
		{
			name: "certificate 9 days from its end",
			setup: func(t *testing.T, s *checkSetup) {
				s.certifyExpiringIn(t, 9*24*time.Hour+12*time.Hour)
				s.edit(t, "log: {format: json}\n", "log: {format: json}\ncertificates: {warn_before: 720h}\n")
			},
			wantLine:   "warning certificate (environment sim): ",
			wantJSON:   "warning",
			wantDetail: []string{"expires on " + time.Now().Add(9*24*time.Hour+12*time.Hour).UTC().Format(time.DateOnly), "in 9 days", "portvakt hsm import-cert"},
		},
		{
			name: "configuration does not load",
			setup: func(t *testing.T, s *checkSetup) {
				s.edit(t, "policy: policy.yaml\n", "policy: policy.yaml\nno_such_setting: 1\n")
			},
			wantStatus: 1,
			wantLine:   "FAIL    configuration: ",
			wantJSON:   "fail",
			wantDetail: []string{"portvakt.yaml", "no_such_setting"},
		},
		{
			// Each problem a line of its own (they were joined into one).
			name: "configuration with two problems",
			setup: func(t *testing.T, s *checkSetup) {
				s.edit(t, "policy: policy.yaml\n", "policy: policy.yaml\nno_such_setting: 1\nnor_this: 2\n")
			},
			wantStatus: 1,
			wantLine:   "FAIL    configuration: ",
			wantJSON:   "fail",
			wantDetail: []string{"portvakt.yaml:", "unknown key"},
			wantLines:  2,
		},
		{
			name: "token endpoint unreachable",
			setup: func(t *testing.T, s *checkSetup) {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				url := "http://" + lis.Addr().String() + "/"
				lis.Close()
				s.edit(t, s.envLine(), fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}\n", url, url+"token", mptest.ClientID))
				t.Setenv("PORTVAKT_TEST_URL", url+"token")
			},
			wantStatus: 1,
			wantLine:   "FAIL    token endpoint (environment sim): ",
			wantJSON:   "fail",
			wantDetail: []string{"cannot be reached", "connection refused", "$PORTVAKT_TEST_URL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newCheckSetup(t)
			tt.setup(t, s)
			var details []string
			for _, d := range tt.wantDetail {
				details = append(details, os.ExpandEnv(d))
			}
			text, errText, status := runPortvakt(t, "serve", "--config", s.file, "--check")
			if status != tt.wantStatus {
				t.Fatalf("serve --check exited %d, want %d:\n%s%s", status, tt.wantStatus, text, errText)
			}
			t.Logf("serve --check printed:\n%s", text)
			doc, errJSON, status := runPortvakt(t, "serve", "--config", s.file, "--check", "--json")
			if status != tt.wantStatus {
				t.Fatalf("serve --check --json exited %d, want %d:\n%s%s", status, tt.wantStatus, doc, errJSON)
			}
			if pin := s.world.Token.PIN.Reveal(); strings.Contains(text+errText+doc+errJSON, pin) {
				t.Fatal("serve --check printed the PIN")
			}
			var report checkJSON
			if err := json.Unmarshal([]byte(doc), &report); err != nil {
				t.Fatalf("serve --check --json printed no JSON document: %v\n%s", err, doc)
			}
			lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
			if len(lines) != len(report.Checks) {
				t.Fatalf("%d lines of text and %d checks in the JSON:\n%s\n%s", len(lines), len(report.Checks), text, doc)
			}
			found := 0
			for i, c := range report.Checks {
				status := map[string]string{"ok": "ok", "warning": "warning", "fail": "FAIL"}[c.Status]
				what := c.Name
				if c.Environment != "" {
					what += " (environment " + c.Environment + ")"
				}
				if want := fmt.Sprintf("%-7s %s: %s", status, what, c.Detail); lines[i] != want {
					t.Errorf("line %d is\n%s\nthe JSON's check %d reads\n%s", i+1, lines[i], i+1, want)
				}
				if strings.HasPrefix(lines[i], tt.wantLine) {
					found++
					if c.Status != tt.wantJSON {
						t.Errorf("the check's status in the JSON is %q, want %q", c.Status, tt.wantJSON)
					}
					for _, d := range details {
						if !strings.Contains(c.Detail, d) {
							t.Errorf("%s\ndoes not hold %q", lines[i], d)
						}
					}
				}
			}
			if want := max(tt.wantLines, 1); found != want {
				t.Errorf("%d lines start %q, want %d:\n%s", found, tt.wantLine, want, text)
			}
		})
	}
}

// fileStates are the files under a directory: each one's mode and, for a
// regular file, its bytes.
func fileStates(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = info.Mode().String()
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files[rel] += " " + string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestServeCheckWritesNothing: `serve --check` on a configuration nothing
// ran on yet leaves its directory as it was: no audit folder, no start
// record, no socket folder. Before, the check started the daemon and
// closed it, leaving all three.
func TestServeCheckWritesNothing(t *testing.T) {
	s := newCheckSetup(t)
	before := fileStates(t, s.dir)
	if out, errOut, status := runPortvakt(t, "serve", "--config", s.file, "--check"); status != 0 {
		t.Fatalf("serve --check exited %d:\n%s%s", status, out, errOut)
	}
	after := fileStates(t, s.dir)
	for name, state := range after {
		if before[name] != state {
			t.Errorf("%s was written by the check", name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			t.Errorf("%s was removed by the check", name)
		}
	}
}

// TestServeFatalErrorIsLogged: with log.format json, the error that stops
// `serve` is a JSON log record, and nothing else is printed; with text,
// it is the one line `portvakt: ...`. Before, it was that plain line
// after the JSON log whatever the format.
func TestServeFatalErrorIsLogged(t *testing.T) {
	s := newCheckSetup(t)
	s.edit(t, "key_label: eseal}", "key_label: no-such-key}")
	_, stderr, status := runPortvakt(t, "serve", "--config", s.file)
	if status != 1 {
		t.Fatalf("serve exited %d, want 1:\n%s", status, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	for _, line := range lines {
		if !json.Valid([]byte(line)) {
			t.Errorf("with log.format json, serve printed a line that is not JSON: %s", line)
		}
	}
	var last struct{ Level, Msg, Error string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.Level != "ERROR" || last.Msg != "portvakt serve failed" || !strings.Contains(last.Error, `no private key label "no-such-key"`) {
		t.Errorf("the last record is %+v, want the ERROR that stopped serve", last)
	}

	s.edit(t, "log: {format: json}\n", "log: {format: text}\n")
	_, stderr, status = runPortvakt(t, "serve", "--config", s.file)
	lines = strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if last := lines[len(lines)-1]; status != 1 || !strings.HasPrefix(last, "portvakt: ") || !strings.Contains(last, "no-such-key") {
		t.Errorf("with log.format text, serve exited %d and printed last %q, want 1 and the error as one line", status, last)
	}
}
