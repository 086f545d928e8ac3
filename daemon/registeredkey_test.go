package daemon_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/logbuffer"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

const (
	registeredKID    = "portvakt-test-2026"
	registeredClient = "portvakt-kid"
	registeredLabel  = "registered"
)

// kidWorld is the world's token with a key that has no certificate object,
// and a simulator of its own on which a client is registered by that key's
// kid (and by nothing else: it has no trust roots, so x5c cannot work). The
// simulator's handler keeps the header of every grant it is sent.
type kidWorld struct {
	*mptest.World
	public *rsa.PublicKey
	issuer string

	mu      sync.Mutex
	headers []map[string]any
}

func newKIDWorld(t *testing.T) *kidWorld {
	t.Helper()
	w := mptest.New(t, mptest.Options{NoSigner: true})
	key, err := hsm.GenerateKey(w.Token.Token, hsm.KeySpec{Label: registeredLabel, Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	kw := &kidWorld{World: w, public: key.Public}
	l, err := mpsim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	kw.issuer = l.URL()
	sim, err := mpsim.New(mpsim.Config{
		Issuer: kw.issuer,
		Clients: []mpsim.Client{{
			ID: registeredClient, OrgNumber: mptest.OwnOrg, Scopes: []string{mptest.ScopeOwn},
			Keys: map[string]crypto.PublicKey{registeredKID: key.Public},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Serve(kw.recordHeaders(sim.Handler())); err != nil {
		t.Fatal(err)
	}
	return kw
}

// recordHeaders keeps each token request's grant header, then passes the
// request on unchanged.
func (kw *kidWorld) recordHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("assertion") != "" {
			var header map[string]any
			raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(form.Get("assertion"), ".")[0])
			if json.Unmarshal(raw, &header) == nil {
				kw.mu.Lock()
				kw.headers = append(kw.headers, header)
				kw.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (kw *kidWorld) grantHeaders() []map[string]any {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	return append([]map[string]any(nil), kw.headers...)
}

// useRegisteredKey points the configuration's environment at the kid
// simulator, with the key without certificate and the extra settings.
func (kw *kidWorld) useRegisteredKey(extra string) func(string) string {
	return func(cfg string) string {
		old := fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}\n", kw.Issuer, kw.Endpoint, mptest.ClientID)
		if !strings.Contains(cfg, old) {
			panic("the fixture's environment line changed: " + old)
		}
		return strings.Replace(cfg, old, fmt.Sprintf("  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: %s, kid: %s%s}\n",
			kw.issuer, kw.issuer+"token", registeredClient, registeredLabel, registeredKID, extra), 1)
	}
}

func writePublicKeyPEM(t testing.TB, path string, key *rsa.PublicKey) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRegisteredKeyWithoutCertificate: an environment with kid signs with a
// key that has no certificate anywhere. The daemon checks the key (a test
// signature, and the public key registered at Digdir from public_key_file),
// starts, and gets tokens with grants that carry kid and no x5c; where a
// certificate would be shown it says there is none.
func TestRegisteredKeyWithoutCertificate(t *testing.T) {
	kw := newKIDWorld(t)
	e := prepare(t, kw.World)
	writePublicKeyPEM(t, filepath.Join(e.dir, "registered.pem"), kw.public)
	e.edit(t, kw.useRegisteredKey(", public_key_file: registered.pem"))
	e.serve(t)

	tok, err := e.unix.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"})
	if err != nil {
		t.Fatalf("token with a registered key: %v", err)
	}
	if claims := accessTokenClaims(t, tok.AccessToken); claims["client_amr"] != mpsim.AMRPrivateKeyJWT || claims["client_id"] != registeredClient {
		t.Errorf("access token claims %v: want client %s authenticated by its registered key (%s)", claims, registeredClient, mpsim.AMRPrivateKeyJWT)
	}
	headers := kw.grantHeaders()
	if len(headers) != 1 {
		t.Fatalf("the simulator saw %d grants, want 1", len(headers))
	}
	if h := headers[0]; h["kid"] != registeredKID || h["x5c"] != nil || h["alg"] != "RS256" {
		t.Errorf("grant header %v: want kid %s and no x5c", h, registeredKID)
	}

	envs, err := e.mtls.API().ListEnvironments(t.Context(), &portvaktv1.ListEnvironmentsRequest{})
	if err != nil || len(envs.GetEnvironments()) != 1 {
		t.Fatalf("ListEnvironments = %v, %v", envs, err)
	}
	env := envs.GetEnvironments()[0]
	if env.GetCertificateSubject() != "no certificate: registered key "+registeredKID || env.GetCertificateNotAfter() != nil ||
		env.GetCertificateSha256() != "" || env.GetOrgNumber() != "" || env.GetKeyLabel() != registeredLabel || env.GetClientId() != registeredClient {
		t.Errorf("ListEnvironments: %v, want no certificate shown for the registered key", env)
	}

	logs := e.logs.String()
	if !strings.Contains(logs, `"certificate":"no certificate: registered key `+registeredKID+`"`) || !strings.Contains(logs, `"checked_against_public_key_file":true`) {
		t.Errorf("the start-up log does not say the environment has no certificate but a checked registered key:\n%s", logs)
	}
	if strings.Contains(logs, "certificate expire") {
		t.Errorf("certificate warnings for an environment without a certificate:\n%s", logs)
	}
	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	sim := map[string]string{"environment": "sim"}
	if v, ok := value(families, "portvakt_certificate_not_after_timestamp_seconds", sim); ok {
		t.Errorf("portvakt_certificate_not_after_timestamp_seconds = %v for an environment without a certificate", v)
	}
	if v, ok := value(families, "portvakt_certificate_expiring_soon", sim); ok && v != 0 {
		t.Errorf("portvakt_certificate_expiring_soon = %v for an environment without a certificate", v)
	}
}

// TestRegisteredKeyRefusedAtStart: the daemon does not start with a
// public_key_file that is not the HSM key's, nor with kid_with_x5c when the
// key has no certificate; each message names the field and what to do.
func TestRegisteredKeyRefusedAtStart(t *testing.T) {
	kw := newKIDWorld(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		extra string
		want  []string
	}{
		{"another public key", ", public_key_file: other.pem", []string{
			"environments[0] (sim).public_key_file: the HSM key label \"registered\" is not the key registered for kid " + registeredKID,
			"select the key registered at Digdir, or give its public key",
		}},
		{"kid_with_x5c without a certificate", ", kid_with_x5c: true", []string{
			"environments[0] (sim).kid_with_x5c: x5c beside the kid needs the key's certificate (HSM default)",
			"holds no certificate for key label \"registered\"", "or remove kid_with_x5c to send the kid alone",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := prepare(t, kw.World)
			writePublicKeyPEM(t, filepath.Join(e.dir, "other.pem"), &other.PublicKey)
			e.edit(t, kw.useRegisteredKey(tt.extra))
			err := startErr(t, e)
			if err == nil {
				t.Fatal("the daemon started")
			}
			t.Logf("refused: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("start error %q\ndoes not say %q", err, w)
				}
			}
		})
	}
}

// startErr loads e's configuration and starts a daemon on it, returning
// why it did not start (the daemon is closed if it did).
func startErr(t testing.TB, e *env) error {
	t.Helper()
	cfg, err := config.Load(e.cfgFile)
	if err == nil {
		err = resolveDevelopmentHSMs(cfg)
	}
	if err != nil {
		return err
	}
	d, err := daemon.New(cfg, daemon.Options{Logger: slog.New(slog.NewJSONHandler(&logbuffer.Buffer{}, nil))})
	if err == nil {
		_ = d.Close()
	}
	return err
}

// TestRegisteredKeyWithX5C: with kid_with_x5c the grant carries the
// registered key's kid and, beside it, the eSeal's chain, which pins the
// key to the certificate; Maskinporten (the simulator) accepts it and
// checks the certificate too. The simulator refused such grants before
// ("exactly one of x5c and kid"), so the mode had never worked against it.
func TestRegisteredKeyWithX5C(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true, ESealKID: "eseal-2026"})
	e := prepare(t, w)
	e.edit(t, withSettings("kid: eseal-2026, kid_with_x5c: true"))
	e.serve(t)
	tok, err := e.unix.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"})
	if err != nil {
		t.Fatalf("a token with kid and x5c: %v", err)
	}
	if claims := accessTokenClaims(t, tok.AccessToken); claims["client_amr"] != mpsim.AMRCertificate {
		t.Errorf("client_amr %v, want %s: the certificate beside the kid was checked", claims["client_amr"], mpsim.AMRCertificate)
	}
}

// withSettings adds settings to the fixture's environment line.
func withSettings(settings string) func(string) string {
	return func(cfg string) string {
		old := "key_label: eseal}"
		if !strings.Contains(cfg, old) {
			panic("the fixture's environment line changed")
		}
		return strings.Replace(cfg, old, "key_label: eseal, "+settings+"}", 1)
	}
}
