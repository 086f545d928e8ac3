package daemon_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// TestSealedAuditDeletedWhileRunning: with the log sealed by the HSM, its
// file is deleted while `portvakt serve` runs. The next call gets no token;
// the restart is refused, since the log no longer reaches the head the HSM
// keeps, with what to do; started with --accept-audit-gap, the daemon
// records the gap and serves, and `portvakt audit verify`, given the audit
// key and the HSM, tells the whole story.
func TestSealedAuditDeletedWhileRunning(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	w.Token.NewKey(t, "portvakt-audit")
	e := prepare(t, w)
	e.edit(t, func(cfg string) string {
		return mustReplace(t, cfg, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, seal: {every_records: 4}}")
	})
	get := func(p *process, resource string) (*portvaktv1.GetTokenResponse, error) {
		return p.api.GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: "https://api.example/" + resource})
	}
	p := startProcess(t, e, 0)
	for _, r := range []string{"a", "b", "c"} {
		if _, err := get(p, r); err != nil {
			t.Fatal(err)
		}
	}
	stopProcess(t, p) // a clean stop: the HSM's head is the last checkpoint
	p = startProcess(t, e, 0)
	if _, err := get(p, "d"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.dir, "audit", "audit.log")); err != nil {
		t.Fatal(err)
	}
	resp, err := get(p, "e")
	assertAuditUnavailable(t, resp, err)
	stopProcess(t, p)

	// The restart is refused: the log no longer reaches the HSM's head.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, portvaktBinary(t), "serve", "--config", e.cfgFile).CombinedOutput()
	if err == nil {
		t.Fatalf("the daemon started on a log behind the HSM's head:\n%s", out)
	}
	for _, want := range []string{"the HSM's head", "--accept-audit-gap"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the refused start says:\n%s\nwant it to say %q", out, want)
		}
	}

	// Accepted: the gap goes on record, and tokens come again.
	p = startProcess(t, e, 0, "--accept-audit-gap")
	if _, err := get(p, "f"); err != nil {
		t.Fatalf("GetToken after the accepted start: %v", err)
	}
	stopProcess(t, p)

	keyFile := filepath.Join(e.dir, "audit-key.pem")
	t.Setenv("PORTVAKT_PIN", w.Token.PIN.Reveal())
	if out, err := exec.Command(portvaktBinary(t), "audit", "public-key", "--module", w.Token.Module, "--token", w.Token.Label, "--out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("audit public-key: %v\n%s", err, out)
	}
	verify := exec.Command(portvaktBinary(t), "audit", "verify", "--public-key", keyFile, "--module", w.Token.Module, "--token", w.Token.Label, filepath.Join(e.dir, "audit"))
	got, _ := verify.CombinedOutput()
	// The deletion is a gap; the records from the gap on are sealed by the
	// runs that wrote them, and the log reaches the HSM's new head.
	for _, want := range []string{`gap record \d+ \(deleted`, `the log reaches the HSM's head: checkpoint \d+`, `sealed: records \d+-\d+`} {
		if !regexp.MustCompile(want).Match(got) {
			t.Fatalf("portvakt audit verify printed:\n%s\nwant a line matching %s", got, want)
		}
	}
	if code := verify.ProcessState.ExitCode(); code != 5 {
		t.Fatalf("portvakt audit verify exited %d, want 5 (gaps)", code)
	}
}
