package daemon_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/signer"
)

// auditPublicKey opens the world's audit key after the daemon is gone,
// as `portvakt audit public-key` does.
func auditPublicKey(t *testing.T, w *mptest.World) any {
	t.Helper()
	s, err := signer.Open(signer.Config{
		Token: signer.TokenConfig{Module: w.Token.Module, TokenLabel: w.Token.Label, PIN: w.Token.PIN},
		Key:   signer.KeyConfig{KeyLabel: "portvakt-audit", NoCertificate: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Public()
}

// TestAuditIsSealedByTheHSM: with audit.seal, the daemon seals its log
// with the audit key in the HSM as records come and at a clean shutdown,
// so the whole log verifies as sealed; a record someone appends later,
// chain and all, is reported unsealed.
func TestAuditIsSealedByTheHSM(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	w.Token.NewKey(t, "portvakt-audit")
	e := startDaemon(t, w, func(cfg string) string {
		return mustReplace(t, cfg, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, seal: {every_records: 5}}")
	})
	for i := range 6 {
		if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	logFile := filepath.Join(e.dir, "audit", "audit.log")
	waitFor(t, "a checkpoint while the daemon runs", func() bool {
		data, _ := os.ReadFile(logFile)
		return strings.Contains(string(data), `"kind":"checkpoint"`)
	})
	e.stop()

	key := auditPublicKey(t, w)
	if _, err := audit.Verify(logFile); err != nil {
		t.Fatal(err)
	}
	report, err := audit.VerifySeals(key, logFile)
	if err != nil {
		t.Fatal(err)
	}
	if report.Checkpoints < 1 || len(report.Unsealed) != 0 || report.LastCheckpoint != lastSeq(t, logFile) {
		t.Fatalf("after a clean shutdown: %d checkpoints, the last at %d, unsealed %q; want the log to end in a checkpoint and nothing unsealed",
			report.Checkpoints, report.LastCheckpoint, audit.Ranges(report.Unsealed))
	}
	sealedTo := report.LastCheckpoint

	// Someone who can write the file appends records, chain and all.
	forged := appendForged(t, logFile)
	if _, err := audit.Verify(logFile); err != nil {
		t.Fatalf("the forged record was chained well; the chain alone cannot tell: %v", err)
	}
	report, err = audit.VerifySeals(key, logFile)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := audit.Ranges(report.Unsealed), fmt.Sprintf("%d-%d", sealedTo+1, forged); got != want {
		t.Fatalf("unsealed %q, want exactly the forged records %s", got, want)
	}
	// The key as `portvakt audit public-key` writes it reads back the same.
	der, _ := x509.MarshalPKIXPublicKey(key)
	if block, _ := pem.Decode(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); block == nil {
		t.Fatal("PEM round trip")
	}
}

// appendForged appends records chained onto the last one, as someone
// covering a key use would (a Writer of their own on a copy of the log: a
// start record and a signature record), and returns the last one's seq.
func appendForged(t *testing.T, path string) uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "forger.log")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fw, err := audit.Open(audit.Options{Path: tmp, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := fw.Append(audit.Record{Kind: audit.KindSignature, Client: "billing", Environment: "sim", GrantJTI: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	forged, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	return r.Seq
}

func lastSeq(t *testing.T, path string) uint64 {
	t.Helper()
	res, err := audit.Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	return res.LastSeq
}

// TestAuditHeadOnTheHSM: the daemon keeps its latest checkpoint on the HSM
// as the log's head. A log that no longer reaches it (deleted, or cut
// short) stops the next start with what happened and what to do; with the
// gap accepted, the daemon starts and records the gap first.
func TestAuditHeadOnTheHSM(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	w.Token.NewKey(t, "portvakt-audit")
	seal := func(cfg string) string {
		return mustReplace(t, cfg, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, seal: {every_records: 5}}")
	}
	e := startDaemon(t, w, seal)
	for i := range 3 {
		if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	e.stop()
	logFile := filepath.Join(e.dir, "audit", "audit.log")
	values, err := hsm.ReadObjects(w.Token.Token, audit.HeadLabelOf(instanceOf(t, logFile)))
	if err != nil {
		t.Fatal(err)
	}
	head, ok, err := audit.LatestHead(values)
	if err != nil || !ok || head.Checkpoint != lastSeq(t, logFile) {
		t.Fatalf("the HSM's head: %+v (%v, %v); want the log's last record, the shutdown checkpoint", head, ok, err)
	}
	key := auditPublicKey(t, w)
	if err := audit.CheckHead(head, key, filepath.Dir(logFile)); err != nil {
		t.Fatalf("the log against its own head: %v", err)
	}

	start := func(opts daemon.Options) (*daemon.Daemon, error) {
		cfg, err := config.Load(e.cfgFile)
		if err == nil {
			err = resolveDevelopmentHSMs(cfg)
		}
		if err != nil {
			t.Fatal(err)
		}
		opts.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		return daemon.New(cfg, opts)
	}
	original, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(original), "\n"), "\n")
	for _, tt := range []struct {
		name   string
		damage func()
		want   string
	}{
		{"the log deleted", func() { os.Remove(logFile) }, "the log ends at record 0"},
		{"records cut from the end", func() { os.WriteFile(logFile, []byte(strings.Join(lines[:len(lines)-3], "")), 0o600) }, "were cut from the log"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.damage()
			t.Cleanup(func() { os.WriteFile(logFile, original, 0o600) })
			d, err := start(daemon.Options{})
			if err == nil {
				d.Close()
				t.Fatal("the daemon started on a log behind the HSM's head")
			}
			for _, want := range []string{tt.want, "the HSM's head", "--accept-audit-gap"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("start error %q does not say %q", err, want)
				}
			}
			var p *audit.Problem
			if err := audit.CheckHead(head, key, filepath.Dir(logFile)); !errors.As(err, &p) || p.Kind != audit.ProblemBehindHead {
				t.Fatalf("verify against the HSM's head: %v, want %q", err, audit.ProblemBehindHead)
			}
		})
	}

	// Accepted: the daemon starts on the cut log and records the gap
	// right after its start record, and seals both.
	os.WriteFile(logFile, []byte(strings.Join(lines[:len(lines)-3], "")), 0o600)
	d, err := start(daemon.Options{AcceptAuditGap: true})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	var kinds []string
	if err := audit.Query([]string{logFile}, audit.Filter{}, func(r audit.Record) error { kinds = append(kinds, r.Kind); return nil }); err != nil {
		t.Fatal(err)
	}
	tail := strings.Join(kinds[len(kinds)-3:], ",")
	if tail != "start,head-gap,checkpoint" {
		t.Fatalf("the accepted start wrote %s, want start,head-gap,checkpoint", tail)
	}
	report, err := audit.VerifySeals(key, logFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(kinds); report.LastCheckpoint != uint64(n) || !strings.HasSuffix(audit.Ranges(report.Sealed), fmt.Sprint(n)) {
		t.Fatalf("sealed %s; want the new run's records, gap included, sealed to %d", audit.Ranges(report.Sealed), n)
	}
}
