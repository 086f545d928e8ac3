package signer

import (
	"crypto"
	"fmt"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/secret"
)

// TestPINNeverInLogsOrErrors drives the Signer through the paths that log
// or fail (a wrong PIN, a lost token and its recovery, signing while the
// token is away) and logs its whole Config, then searches every log line
// and every error for the PINs.
func TestPINNeverInLogsOrErrors(t *testing.T) {
	f := newFixture(t)
	logger := f.config().Token.Logger
	var errs []string

	wrong, _ := secret.New("Wrong-PIN-" + strings.Repeat("7", 8))
	cfg := f.config()
	cfg.Token.PIN = wrong
	if _, err := Open(cfg); err == nil {
		t.Fatal("Open with a wrong PIN succeeded")
	} else {
		errs = append(errs, err.Error())
	}

	cfg = f.config()
	// Someone will log the configuration one day; it must still be safe.
	logger.Info("signer config", "config", cfg, "pin", cfg.Token.PIN)
	errs = append(errs, fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg))

	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bringBack := moveTokenDirectory(t, f, s)
	digest := digestOf(crypto.SHA256, []byte("x"))
	waitFor(t, "the token to be lost", func() bool {
		_, err := s.Sign(nil, digest, crypto.SHA256)
		if err != nil {
			errs = append(errs, err.Error())
		}
		return err != nil
	})
	if err := s.Health(); err != nil {
		errs = append(errs, err.Error())
	}
	bringBack()
	waitFor(t, "the token to come back", func() bool { return s.Health() == nil })

	logs := f.logs.String()
	if !strings.Contains(logs, "HSM token lost") {
		t.Fatalf("the test did not exercise the reconnect logs:\n%s", logs)
	}
	for _, secret := range []string{f.tok.PIN.Reveal(), f.tok.SOPIN.Reveal(), wrong.Reveal()} {
		if strings.Contains(logs, secret) {
			t.Errorf("a PIN appears in the logs:\n%s", logs)
		}
		for _, e := range errs {
			if strings.Contains(e, secret) {
				t.Errorf("a PIN appears in an error: %s", e)
			}
		}
	}
	if !strings.Contains(logs, "[redacted]") {
		t.Errorf("the logged config does not show the PIN as [redacted]:\n%s", logs)
	}
}
