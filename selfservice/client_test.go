package selfservice_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/mpsim"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/selfservice"
)

// apiClient is a client of the world's simulator's self-service API,
// authorised by tokens from grants the world's eSeal signs in SoftHSM2;
// the tokens it got are kept, to look for them in errors.
func apiClient(t *testing.T, w *mptest.World) (*selfservice.Client, *[]string) {
	t.Helper()
	b, err := maskinporten.NewGrantBuilder(w.Signer, maskinporten.GrantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mp := maskinporten.NewClient(maskinporten.ClientOptions{})
	var tokens []string
	token := func(ctx context.Context) (secret.Value, error) {
		grant, err := b.Build(maskinporten.GrantRequest{Issuer: w.Issuer, ClientID: mptest.ClientID, Scopes: []string{selfservice.ScopeRead, selfservice.ScopeModify}})
		if err != nil {
			return secret.Value{}, err
		}
		tok, _, err := mp.Post(ctx, w.Endpoint, grant)
		if err == nil {
			tokens = append(tokens, tok.AccessToken.Reveal())
		}
		return tok.AccessToken, err
	}
	c, err := selfservice.New(w.Issuer+mpsim.SelfServicePath, token, selfservice.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, &tokens
}

func newKey(t *testing.T) selfservice.JWK {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	j, err := selfservice.NewJWK(&key.PublicKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestReadAndReplace: against the simulator's API over HTTP, with tokens
// from HSM-signed grants: the set is read, replaced whole, and each new
// key comes back with Maskinporten's year.
func TestReadAndReplace(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	c, _ := apiClient(t, w)
	ctx := t.Context()
	set, err := c.Keys(ctx, mptest.ClientID)
	if err != nil || len(set.Keys) != 0 {
		t.Fatalf("Keys = %+v, %v; want an empty set", set, err)
	}
	a, b := newKey(t), newKey(t)
	before := time.Now()
	set, err = c.Replace(ctx, mptest.ClientID, []selfservice.JWK{a, b})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := set.Kid(b.Kid)
	if len(set.Keys) != 2 || !ok || got.Expires().Before(before.Add(364*24*time.Hour)) || set.Updated.IsZero() {
		t.Fatalf("after Replace: %+v, want both keys, each expiring in a year", set)
	}
	set, err = c.Replace(ctx, mptest.ClientID, []selfservice.JWK{b})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set.Kid(a.Kid); ok || len(set.Keys) != 1 {
		t.Fatalf("after replacing with one key: %+v, want that key alone", set)
	}
	read, err := c.Keys(ctx, mptest.ClientID)
	if err != nil || len(read.Keys) != 1 || read.Keys[0].Kid != b.Kid || read.Keys[0].Exp != got.Exp {
		t.Fatalf("Keys = %+v, %v; want %s alone, its expiry kept", read, err, b.Kid)
	}
}

// TestRefusals: a set the API would refuse is refused before sending;
// one it refuses comes back as a *RefusedError with its words and what
// to do; none holds the token.
func TestRefusals(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	c, tokens := apiClient(t, w)
	ctx := t.Context()
	six := []selfservice.JWK{newKey(t), newKey(t), newKey(t), newKey(t), newKey(t), newKey(t)}
	sent := w.Sim.Stats().SelfServiceRequests
	if _, err := c.Replace(ctx, mptest.ClientID, six); err == nil || !strings.Contains(err.Error(), "at most 5") {
		t.Errorf("six keys: %v", err)
	}
	if _, err := c.Replace(ctx, mptest.ClientID, six[:1:1]); err != nil {
		t.Fatal(err)
	}
	if n := w.Sim.Stats().SelfServiceRequests - sent; n != 1 {
		t.Errorf("%d requests sent, want 1: the six-key set must not have been", n)
	}
	reused := newKey(t)
	reused.Kid = six[0].Kid // another key under a kid in use
	_, err := c.Replace(ctx, mptest.ClientID, []selfservice.JWK{reused})
	var refused *selfservice.RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, selfservice.ErrRefused) || refused.Status != http.StatusBadRequest ||
		!strings.Contains(err.Error(), "registered for another key") {
		t.Errorf("a kid in use for another key: %v", err)
	}
	_, err = c.Keys(ctx, mptest.OtherClient)
	if !errors.As(err, &refused) || refused.Status != http.StatusForbidden || !strings.Contains(err.Error(), "enterprise certificate") {
		t.Errorf("another organisation's integration: %v", err)
	}
	for _, tok := range *tokens {
		if strings.Contains(err.Error(), tok) {
			t.Fatal("an error holds the token")
		}
	}
}

// TestUnavailable: the API answering 503, and not there at all, are
// ErrUnavailable, naming the request but not the token.
func TestUnavailable(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	c, _ := apiClient(t, w)
	ctx := t.Context()
	w.Sim.SetFaults(mpsim.Faults{SelfServiceDown: true})
	if _, err := c.Keys(ctx, mptest.ClientID); !errors.Is(err, selfservice.ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("the API down: %v, want ErrUnavailable with HTTP 503", err)
	}
	w.Sim.SetFaults(mpsim.Faults{})
	token := func(context.Context) (secret.Value, error) { return secret.New("not-a-real-token") }
	dead, err := selfservice.New("http://127.0.0.1:1/api/v1/", token, selfservice.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dead.Keys(ctx, mptest.ClientID)
	if !errors.Is(err, selfservice.ErrUnavailable) || strings.Contains(err.Error(), "not-a-real-token") || !strings.Contains(err.Error(), "GET http://127.0.0.1:1/api/v1/clients/") {
		t.Errorf("no API there: %v", err)
	}
	if _, err := selfservice.New("ftp://example.org/", token, selfservice.Options{}); err == nil {
		t.Error("New with an ftp URL: no error")
	}
}
