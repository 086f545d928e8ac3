package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/internal/mptest"
)

// TestKeysList: `portvakt keys list` shows the environment's registered
// keys through the daemon (none here), says that the key the daemon signs
// with is not among them, and gives the same as JSON; without --env it is
// a usage error.
func TestKeysList(t *testing.T) {
	socket := startDaemon(t)
	stdout, stderr, status := runCLI(t, "keys", "list", "--socket", socket, "--env", "sim")
	if status != exitOK || !strings.Contains(stdout, "integration "+mptest.ClientID+": 0 registered keys") ||
		!strings.Contains(stdout, "is not registered: grants that name it are refused") {
		t.Fatalf("keys list: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	stdout, stderr, status = runCLI(t, "keys", "list", "--socket", socket, "--env", "sim", "--json")
	var doc struct {
		Environment          string `json:"environment"`
		ClientID             string `json:"client_id"`
		SigningKid           string `json:"signing_kid"`
		SigningKeyRegistered bool   `json:"signing_key_registered"`
		Keys                 []any  `json:"keys"`
	}
	if status != exitOK || json.Unmarshal([]byte(stdout), &doc) != nil || doc.ClientID != mptest.ClientID || len(doc.SigningKid) != 43 || doc.SigningKeyRegistered || doc.Keys == nil {
		t.Fatalf("keys list --json: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	if _, stderr, status := runCLI(t, "keys", "list", "--socket", socket); status != exitUsage || !strings.Contains(stderr, "--env is required") {
		t.Fatalf("keys list without --env: status %d, stderr %q", status, stderr)
	}
	if _, stderr, status := runCLI(t, "keys", "list", "--socket", socket, "--env", "nowhere"); status != exitUsage || !strings.Contains(stderr, `unknown environment "nowhere"`) {
		t.Fatalf("keys list --env nowhere: status %d, stderr %q", status, stderr)
	}
}

// TestKeysRegister: `portvakt keys register` makes a key in the daemon's
// HSM and registers it, then says nothing changed when asked again;
// `keys list` shows it; a size that is not 2048 or 3072 is a usage error.
func TestKeysRegister(t *testing.T) {
	socket := startDaemon(t)
	stdout, stderr, status := runCLI(t, "keys", "register", "--socket", socket, "--env", "sim", "--label", "registered-2027", "--bits", "2048")
	if status != exitOK || !strings.Contains(stdout, "key registered-2027 (made in the HSM) registered as kid ") {
		t.Fatalf("keys register: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	stdout, stderr, status = runCLI(t, "keys", "register", "--socket", socket, "--env", "sim", "--label", "registered-2027", "--json")
	var doc struct {
		Kid        string `json:"kid"`
		Created    bool   `json:"created"`
		Registered bool   `json:"registered"`
	}
	if status != exitOK || json.Unmarshal([]byte(stdout), &doc) != nil || len(doc.Kid) != 43 || doc.Created || doc.Registered {
		t.Fatalf("keys register again --json: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	if stdout, _, _ := runCLI(t, "keys", "list", "--socket", socket, "--env", "sim"); !strings.Contains(stdout, doc.Kid) || !strings.Contains(stdout, "1 registered keys") {
		t.Errorf("keys list after registering: %q, want %s", stdout, doc.Kid)
	}
	if _, stderr, status := runCLI(t, "keys", "register", "--socket", socket, "--env", "sim", "--label", "x", "--bits", "1024"); status != exitUsage || !strings.Contains(stderr, "--bits") {
		t.Errorf("--bits 1024: status %d, stderr %q", status, stderr)
	}
}
