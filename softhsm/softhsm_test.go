package softhsm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/softhsm"
)

func TestPrepare(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hsm")
	d, err := softhsm.Prepare(path)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(d.ConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "directories.tokendir = "+d.TokenDir()+"\n") || !filepath.IsAbs(d.TokenDir()) {
		t.Fatalf("configuration does not point at the absolute token directory %s:\n%s", d.TokenDir(), conf)
	}
	info, err := os.Stat(d.TokenDir())
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("token directory: %v, mode %v; want 0700", err, info.Mode().Perm())
	}
	if again, err := softhsm.Prepare(path); err != nil || again != d {
		t.Fatalf("second Prepare = %q, %v; want the same directory", again, err)
	}
	if err := os.WriteFile(d.ConfigFile(), []byte("directories.tokendir = /var/lib/softhsm/tokens\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := softhsm.Prepare(path); err == nil || !strings.Contains(err.Error(), "not the configuration Portvakt writes") {
		t.Fatalf("Prepare over a foreign configuration: %v", err)
	}
}

func TestActivateUnpreparedDirectory(t *testing.T) {
	err := softhsm.Dir(t.TempDir()).Activate()
	if err == nil || !strings.Contains(err.Error(), "hsm init") {
		t.Fatalf("Activate of an unprepared directory: %v", err)
	}
}

// TestTokenLivesInItsDirectory initialises a token through the real module
// and checks that SoftHSM2 wrote it into the prepared directory and nowhere
// else: the demo and tests must never touch the machine's own tokens.
func TestTokenLivesInItsDirectory(t *testing.T) {
	module, err := softhsm.FindModule()
	if err != nil {
		t.Fatal(err)
	}
	d, err := softhsm.Prepare(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", "") // restored after the test
	if err := d.Activate(); err != nil {
		t.Fatal(err)
	}
	userPIN, _ := secret.New("user-pin-1234")
	soPIN, _ := secret.New("so-pin-123456")
	if err := hsm.InitToken(module, "dir-test", soPIN, userPIN); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(d.TokenDir())
	if err != nil || len(entries) != 1 {
		t.Fatalf("token directory holds %d entries (%v), want the one new token", len(entries), err)
	}
	// The token is usable by label with the user PIN.
	if _, err := hsm.List(hsm.Token{Module: module, Label: "dir-test", PIN: userPIN}); err != nil {
		t.Fatalf("listing the new token: %v", err)
	}
}
