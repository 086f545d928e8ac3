package daemon_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/audit"
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
