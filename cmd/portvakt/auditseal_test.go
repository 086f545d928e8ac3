package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestAuditVerifyWithPublicKey: `audit public-key` exports the HSM audit
// key; `audit verify --public-key` then says which records are sealed, and
// fails with the unsealed ones named (exit status 4) when some are not.
func TestAuditVerifyWithPublicKey(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "portvakt-audit")
	t.Setenv("PORTVAKT_PIN", tok.PIN.Reveal())
	keyFile := filepath.Join(t.TempDir(), "audit-key.pem")
	if _, err := runAudit(t, "public-key", "--module", tok.Module, "--token", tok.Label, "--out", keyFile); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(data); block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("public-key wrote %q, want a PEM PUBLIC KEY", data)
	} else if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		t.Fatal(err)
	}

	// A log sealed by the same key in the HSM.
	key, err := signer.Open(signer.Config{
		Token: signer.TokenConfig{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN},
		Key:   signer.KeyConfig{KeyLabel: "portvakt-audit", NoCertificate: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	path := filepath.Join(t.TempDir(), "audit", "audit.log")
	w, err := audit.Open(audit.Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.NewCheckpointer(w, audit.CheckpointOptions{Key: key, OnCheckpoint: func(r audit.Record) error {
		head, err := audit.HeadOf(r)
		if err != nil {
			return err
		}
		return hsm.WriteObject(tok.Token, audit.HeadLabel, head.Marshal())
	}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := w.Append(audit.Record{Kind: audit.KindDecision, Client: "billing"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	out, err := runAudit(t, "verify", "--public-key", keyFile, path)
	if err != nil || !strings.Contains(out, "sealed: records 1-5, by 1 checkpoint") || strings.Contains(out, "UNSEALED") {
		t.Fatalf("verify of a sealed log: %v\n%s", err, out)
	}

	if _, err := w.Append(audit.Record{Kind: audit.KindDecision, Client: "billing"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out, err = runAudit(t, "verify", "--public-key", keyFile, path)
	if !isUnsealed(err) || !strings.Contains(out, "UNSEALED: records 6:") {
		t.Fatalf("verify with an unsealed tail: %v\n%s\nwant the tail named and exit status 4", err, out)
	}
	out, err = runAudit(t, "verify", path)
	if err != nil || !strings.Contains(out, "checkpoints not checked: give --public-key") {
		t.Fatalf("verify without the key must say the seals were not checked: %v\n%s", err, out)
	}

	// The head on the HSM: the log reaches it; cut short, it does not.
	hsmFlags := []string{"--module", tok.Module, "--token", tok.Label}
	out, err = runAudit(t, append([]string{"verify", "--public-key", keyFile}, append(hsmFlags, path)...)...)
	if !isUnsealed(err) || !strings.Contains(out, "the log reaches the HSM's head: checkpoint 5") {
		t.Fatalf("verify against the HSM's head: %v\n%s", err, out)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if err := os.WriteFile(path, []byte(strings.Join(lines[:3], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runAudit(t, append([]string{"verify"}, append(hsmFlags, path)...)...)
	if err == nil || !strings.Contains(err.Error(), "were cut from the log") {
		t.Fatalf("verify of a log cut before the HSM's head: %v\n%s", err, out)
	}
}
