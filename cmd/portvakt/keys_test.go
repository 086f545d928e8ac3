package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
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
	// The token's keys beside the set: the eSeal, in use, not registered.
	if !regexp.MustCompile(`(?m)^eseal +[A-Za-z0-9_-]{43} +2048 +- +yes$`).MatchString(stdout) {
		t.Errorf("keys list shows no line for the token's key eseal (in use, not registered):\n%s", stdout)
	}
	stdout, stderr, status = runCLI(t, "keys", "list", "--socket", socket, "--env", "sim", "--json")
	var doc struct {
		Environment          string `json:"environment"`
		ClientID             string `json:"client_id"`
		SigningKid           string `json:"signing_kid"`
		SigningKeyRegistered bool   `json:"signing_key_registered"`
		Keys                 []any  `json:"keys"`
		TokenKeys            []struct {
			Label, Thumbprint string
			InUse             bool `json:"in_use"`
		} `json:"token_keys"`
	}
	if status != exitOK || json.Unmarshal([]byte(stdout), &doc) != nil || doc.ClientID != mptest.ClientID || len(doc.SigningKid) != 43 || doc.SigningKeyRegistered || doc.Keys == nil {
		t.Fatalf("keys list --json: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	if !slices.ContainsFunc(doc.TokenKeys, func(k struct {
		Label, Thumbprint string
		InUse             bool `json:"in_use"`
	}) bool {
		return k.Label == "eseal" && k.InUse && k.Thumbprint == doc.SigningKid
	}) {
		t.Errorf("keys list --json: token_keys %+v; want eseal, in use, its thumbprint the signing kid", doc.TokenKeys)
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

// TestKeysRotate: an environment without rotation is refused with what to
// configure; the flags are checked before the daemon is asked.
func TestKeysRotate(t *testing.T) {
	socket := startDaemon(t)
	_, stderr, status := runCLI(t, "keys", "rotate", "--socket", socket, "--env", "sim")
	if status == exitOK || !strings.Contains(stderr, "has no key rotation: configure environments[].rotation") {
		t.Errorf("keys rotate without rotation: status %d, stderr %q", status, stderr)
	}
	if _, stderr, status := runCLI(t, "keys", "rotate", "--socket", socket); status != exitUsage || !strings.Contains(stderr, "--env is required") {
		t.Errorf("keys rotate without --env: status %d, stderr %q", status, stderr)
	}
}

// TestPrintRotation: each state of a rotation in a line an operator reads.
func TestPrintRotation(t *testing.T) {
	at := timestamppb.New(time.Date(2027, 3, 1, 6, 0, 0, 0, time.UTC))
	tests := []struct {
		name string
		r    *portvaktv1.KeyRotation
		want []string
	}{
		{"idle, expiry unknown", &portvaktv1.KeyRotation{CurrentKid: "k1", CurrentKeyLabel: "registered-0"},
			[]string{"signing with kid k1 (key registered-0), registration ends when not known"}},
		{"asked for", &portvaktv1.KeyRotation{CurrentKid: "k1", Requested: true}, []string{"asked for: it begins at the next step"}},
		{"registering", &portvaktv1.KeyRotation{CurrentKid: "k1", NextKid: "k2", NextKeyLabel: "rot-1"}, []string{"on its way in: kid k2 (key rot-1), being registered"}},
		{"probing", &portvaktv1.KeyRotation{CurrentKid: "k1", NextKid: "k2", NextKeyLabel: "rot-1", NextRegistered: true},
			[]string{"registered; waiting for Maskinporten to accept it"}},
		{"draining", &portvaktv1.KeyRotation{CurrentKid: "k2", PreviousKid: "k1", PreviousKeyLabel: "registered-0"},
			[]string{"on its way out: kid k1 (key registered-0), leaves the registered keys at a time set once its grants in flight are done"}},
		{"retiring", &portvaktv1.KeyRotation{CurrentKid: "k2", PreviousKid: "k1", PreviousRetireAfter: at}, []string{"leaves the registered keys at 2027-03-01"}},
		{"out of the JWKS", &portvaktv1.KeyRotation{CurrentKid: "k2", PreviousKid: "k1", PreviousUnregistered: true}, []string{"has left the registered keys; leaves the HSM later"}},
		{"failing, planned", &portvaktv1.KeyRotation{CurrentKid: "k1", NextRotation: at, Failures: 3, LastError: "registering: down"},
			[]string{"next automatic rotation: 2027-03-01", "3 failed steps since the daemon started (each is tried again); the latest: registering: down"}},
	}
	t.Setenv("TZ", "UTC")
	for _, tt := range tests {
		var b strings.Builder
		printRotation(&b, tt.r)
		for _, want := range tt.want {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s: printed\n%s\nwant it to hold %q", tt.name, b.String(), want)
			}
		}
	}
}
