package signer

import (
	"context"
	"crypto"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/tokencache"
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

// TestHoldersNeverFormatThePIN formats every type that holds a secret.Value,
// directly or through unexported fields (where fmt cannot call the Value's
// own Format method and falls back to reflection), with every common verb,
// and checks that the secret never appears.
func TestHoldersNeverFormatThePIN(t *testing.T) {
	f := newFixture(t)
	s := f.open(t)
	tok, err := OpenToken(f.config().Token)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()

	pin := f.tok.PIN
	tokenConfig := f.config().Token
	access, _ := secret.New("access-token-" + strings.Repeat("9", 12))
	assertion, _ := secret.New("grant-assertion-" + strings.Repeat("8", 12))
	mpToken := maskinporten.Token{AccessToken: access, TokenType: "Bearer", ExpiresIn: time.Hour}
	cache := tokencache.New(func(context.Context, tokencache.Key) (maskinporten.Token, error) {
		t := mpToken
		t.IssuedAt = time.Now()
		t.ExpiresAt = t.IssuedAt.Add(t.ExpiresIn)
		return t, nil
	}, tokencache.Options{})
	if _, err := cache.Get(context.Background(), tokencache.NewKey("test", "client", []string{"scope"}, "", tokencache.OnBehalfOf{}), time.Minute); err != nil {
		t.Fatal(err)
	}
	secrets := []string{pin.Reveal(), f.tok.SOPIN.Reveal(), access.Reveal(), assertion.Reveal()}

	holders := []struct {
		name  string
		value any
	}{
		{"*signer.Signer", s},
		{"*signer.Token", tok},
		{"*signer.Token through the Signer", s.token},
		{"signer.Config", f.config()},
		{"signer.TokenConfig", f.config().Token},
		{"*signer.TokenConfig", &tokenConfig},
		{"hsm.Token", f.tok.Token},
		{"softhsmtest.Token", f.tok},
		{"maskinporten.Token", mpToken},
		{"maskinporten.Grant", maskinporten.Grant{Assertion: assertion, JTI: "jti"}},
		{"*tokencache.Cache", cache},
		{"unexported holder", struct{ cfg TokenConfig }{f.config().Token}},
		{"unexported secret.Value", struct{ pin secret.Value }{pin}},
	}
	for _, h := range holders {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			t.Run(h.name+" "+verb, func(t *testing.T) {
				out := fmt.Sprintf(verb, h.value)
				for _, sec := range secrets {
					if strings.Contains(out, sec) {
						t.Fatalf("fmt.Sprintf(%q) reveals a secret:\n%s", verb, out)
					}
				}
			})
		}
	}
}
