package daemon_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// fileState is what a snapshot keeps of one file.
type fileState struct {
	mode fs.FileMode
	data string // a regular file's bytes
}

// snapshot is every file under dir, its mode and a regular file's bytes,
// but those skip leaves out.
func snapshot(t *testing.T, dir string, skip func(rel string) bool) map[string]fileState {
	t.Helper()
	files := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if skip != nil && skip(rel) {
			return nil
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fileState{mode: info.Mode()}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			st.data = string(data)
		}
		files[rel] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// sameSnapshot fails the test for each file that differs.
func sameSnapshot(t *testing.T, what string, before, after map[string]fileState) {
	t.Helper()
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s: %s is gone", what, name)
		case a.mode != b.mode:
			t.Errorf("%s: %s changed mode from %v to %v", what, name, b.mode, a.mode)
		case a.data != b.data:
			t.Errorf("%s: %s changed (%d bytes, now %d)", what, name, len(b.data), len(a.data))
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s: %s appeared", what, name)
		}
	}
}

// runCheck runs `portvakt serve --check` with the arguments on e's
// configuration, and returns its standard output and error.
func runCheck(t *testing.T, e *env, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(portvaktBinary(t), append([]string{"serve", "--config", e.cfgFile, "--check"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// TestServeCheckWhileTheDaemonRuns: `serve --check` on the configuration
// of a daemon that runs (its own process, the audit log sealed, every
// listener on a fixed address) succeeds, sees each listener held by a
// running Portvakt, verifies the log, and changes nothing: every file of
// the daemon's directory (audit log, socket, policy, TLS files) and of the
// SoftHSM2 token (which holds the log's head) keeps its bytes and mode, and
// no file comes or goes. Before, the check took the audit log's lock and
// failed ("another process is writing this log").
func TestServeCheckWhileTheDaemonRuns(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	w.Token.NewKey(t, "portvakt-audit")
	e := prepare(t, w)
	tcp, metrics, health := freePort(t), freePort(t), freePort(t)
	e.edit(t, func(cfg string) string {
		cfg = mustReplace(t, cfg, `tcp: {address: "127.0.0.1:0"`, `tcp: {address: "`+tcp+`"`)
		cfg = mustReplace(t, cfg, `metrics: {address: "127.0.0.1:0"}`, `metrics: {address: "`+metrics+`"}`)
		cfg = mustReplace(t, cfg, "listen:\n", "listen:\n  health: {address: \""+health+"\"}\n")
		return mustReplace(t, cfg, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, seal: {every_records: 1}}")
	})
	p := startProcess(t, e, 0)
	if _, err := p.api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatal(err)
	}
	// The daemon is quiet once its last record is sealed, and its head
	// on the HSM with it.
	logFile := filepath.Join(e.dir, "audit", "audit.log")
	cfg, err := config.Load(e.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the log to end in a checkpoint, kept on the HSM as its head", func() bool {
		var last audit.Record
		if err := audit.Query([]string{logFile}, audit.Filter{}, func(r audit.Record) error { last = r; return nil }); err != nil || last.Kind != audit.KindCheckpoint {
			return false
		}
		values, err := hsm.ReadObjects(w.Token.Token, audit.HeadLabelOf(cfg.Audit.Instance))
		if err != nil {
			t.Fatal(err)
		}
		head, ok, err := audit.LatestHead(values)
		return err == nil && ok && head.Checkpoint == last.Seq
	})
	daemonLog := func(rel string) bool { return strings.HasPrefix(rel, "portvakt-") } // the test's capture of the daemon's output
	// The token's files are looked at where they are SoftHSM2's.
	softHSM2 := softhsmtest.Implementation() == softhsmtest.SoftHSM2
	var tokenDir string
	var tokenBefore map[string]fileState
	if softHSM2 {
		tokenDir = w.Token.Directory(t)
		tokenBefore = snapshot(t, tokenDir, nil)
	}
	dirBefore := snapshot(t, e.dir, daemonLog)

	if out, errOut, err := runCheck(t, e); err != nil {
		t.Fatalf("serve --check while the daemon runs: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err := runCheck(t, e, "--json")
	if err != nil {
		t.Fatalf("serve --check --json while the daemon runs: %v\n%s%s", err, out, errOut)
	}
	// Decoded as any reader of the JSON would, not with the daemon's type.
	var report struct {
		Checks []struct{ Name, Status, Environment, Detail string }
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("serve --check --json printed no JSON report: %v\n%s", err, out)
	}
	named := map[string][]string{} // name: status and detail of each such check
	for _, c := range report.Checks {
		named[c.Name] = append(named[c.Name], c.Status+": "+c.Detail)
	}
	for _, name := range []string{"listen.unix.path", "listen.tcp.address", "listen.health.address", "metrics.address"} {
		if c := named[name]; len(c) != 1 || !strings.HasPrefix(c[0], "ok: ") || !strings.Contains(c[0], "held by a running Portvakt") {
			t.Errorf("%s: %q, want one ok check saying a running Portvakt holds it", name, c)
		}
	}
	for _, name := range []string{"audit log", "audit head", "audit seal"} {
		if c := named[name]; len(c) != 1 || !strings.HasPrefix(c[0], "ok: ") {
			t.Errorf("%s: %q, want one ok check", name, c)
		}
	}

	sameSnapshot(t, "the daemon's directory", dirBefore, snapshot(t, e.dir, daemonLog))
	if softHSM2 {
		sameSnapshot(t, "the SoftHSM2 token's directory", withoutLoginGeneration(t, tokenBefore), withoutLoginGeneration(t, snapshot(t, tokenDir, nil)))
	}
}

// withoutLoginGeneration leaves out the first 8 bytes of SoftHSM2's
// token.object: a generation counter that SoftHSM2 (2.6) counts up at
// every C_Login, whatever the session, as it stores the token's PIN flags
// again (Token::loginUser calls setTokenFlags, on success and failure).
// A check that finds the keys must log in, so this counter moves, as it
// does at each start of the daemon; the flags and every object stay.
func withoutLoginGeneration(t *testing.T, files map[string]fileState) map[string]fileState {
	t.Helper()
	st, ok := files["token.object"]
	if !ok || len(st.data) < 8 {
		t.Fatalf("the token's directory has no token.object of SoftHSM2's: %v", files)
	}
	st.data = st.data[8:]
	files["token.object"] = st
	return files
}
