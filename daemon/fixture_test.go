package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel/trace"

	"github.com/portvakt/portvakt/internal/logbuffer"
	"github.com/portvakt/portvakt/softhsm"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

const billingID = "spiffe://portvakt.test/ns/billing/sa/api"

// tlsCA is a throwaway CA for the daemon's mutual TLS.
type tlsCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTLSCA(t testing.TB, name string) *tlsCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &tlsCA{cert: cert, key: key}
}

// issue writes a leaf certificate and key to dir/name.pem, dir/name-key.pem.
func (ca *tlsCA) issue(t testing.TB, dir, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// env is a running daemon in front of the simulator, and ways to call it.
type env struct {
	world      *mptest.World
	daemon     *daemon.Daemon
	dir        string
	policyFile string
	unix       *client.Client
	mtls       *client.Client
	tlsOpts    client.Options
	untrusted  client.Options
	cancel     context.CancelFunc
	done       chan error

	logs *logbuffer.Buffer
	// clock, when set before serve, is the daemon's token clock.
	clock clockwork.Clock
	// tracerProvider, when set before serve, takes the daemon's spans.
	tracerProvider        trace.TracerProvider
	cfgFile               string
	ca                    *tlsCA // issues the mTLS client certificates
	clientCert, clientKey string
	rogueCert, rogueKey   string
}

const policyTemplate = `clients:
  - name: billing
    identities: [%q, "uid:%d"]
    rules:
      - environments: [sim]
        scopes: [%s, %s]
      - environments: [sim]
        scopes: [%s]
        consumer_orgs: ["%s"]
`

func (e *env) writePolicy(t testing.TB, body string) {
	t.Helper()
	tmp := e.policyFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.policyFile); err != nil {
		t.Fatal(err)
	}
}

func defaultPolicy() string {
	return fmt.Sprintf(policyTemplate, billingID, os.Getuid(), mptest.ScopeOwn, mptest.ScopeNotGranted, mptest.ScopeDelegated, mptest.ConsumerOrg)
}

// prepare writes a configuration for the world (policy, mTLS material,
// daemon configuration) into a fresh directory.
func prepare(t testing.TB, w *mptest.World) *env {
	t.Helper()
	// Unix socket paths are limited to about 100 bytes: keep it short.
	dir, err := os.MkdirTemp("", "pv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &env{world: w, dir: dir, policyFile: filepath.Join(dir, "policy.yaml"), cfgFile: filepath.Join(dir, "portvakt.yaml")}
	e.writePolicy(t, defaultPolicy())

	ca := newTLSCA(t, "Portvakt Test mTLS CA")
	e.ca = ca
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.cert.Raw)
	ca.issue(t, dir, "server", &x509.Certificate{
		Subject: pkix.Name{CommonName: "portvakt"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	spiffe, _ := url.Parse(billingID)
	e.clientCert, e.clientKey = ca.issue(t, dir, "billing", &x509.Certificate{
		Subject: pkix.Name{CommonName: "billing"}, URIs: []*url.URL{spiffe},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	rogue := newTLSCA(t, "Rogue CA")
	e.rogueCert, e.rogueKey = rogue.issue(t, dir, "rogue", &x509.Certificate{
		Subject: pkix.Name{CommonName: "billing"}, URIs: []*url.URL{spiffe},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})

	t.Setenv("PORTVAKT_TEST_PIN", w.Token.PIN.Reveal())
	cfgText := fmt.Sprintf(`
listen:
  unix: {path: portvakt.sock}
  tcp: {address: "127.0.0.1:0", cert_file: server.pem, key_file: server-key.pem, client_ca_file: ca.pem}
hsm: {module: %q, token: %q, pin: {env: PORTVAKT_TEST_PIN}}
environments:
  - {name: sim, issuer: %q, token_endpoint: %q, client_id: %q, key_label: eseal}
policy: policy.yaml
cache: {error_backoff: 1ms}
grpc: {shutdown_grace: 10s}
log: {level: debug}
audit: {file: audit/audit.log}
metrics: {address: "127.0.0.1:0"}
`, w.Token.Module, w.Token.Label, w.Issuer, w.Endpoint, mptest.ClientID)
	if err := os.WriteFile(e.cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// startDaemon prepares a configuration, applies the edits to its text, and
// serves it in this process.
func startDaemon(t testing.TB, w *mptest.World, edits ...func(config string) string) *env {
	t.Helper()
	e := prepare(t, w)
	e.edit(t, edits...)
	e.serve(t)
	return e
}

// edit applies the edits to the configuration's text.
func (e *env) edit(t testing.TB, edits ...func(config string) string) {
	t.Helper()
	text, err := os.ReadFile(e.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range edits {
		text = []byte(edit(string(text)))
	}
	if err := os.WriteFile(e.cfgFile, text, 0o600); err != nil {
		t.Fatal(err)
	}
}

// loadConfig reads e's configuration as the command line does.
func (e *env) loadConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Load(e.cfgFile)
	if err == nil {
		err = resolveDevelopmentHSMs(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve starts the daemon on e's configuration in this process.
func (e *env) serve(t testing.TB) {
	t.Helper()
	cfg := e.loadConfig(t)
	// Logged as in production (every call), to a buffer the test can read:
	// the cost stays in the benchmarks, the noise out of the test output.
	d, err := daemon.New(cfg, e.options())
	if err != nil {
		t.Fatal(err)
	}
	e.run(t, d)
}

// options are the daemon's options for e, logging to a new e.logs.
func (e *env) options() daemon.Options {
	e.logs = &logbuffer.Buffer{}
	return daemon.Options{Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Clock: e.clock, TracerProvider: e.tracerProvider}
}

// run serves d, made with e.options, and dials it.
func (e *env) run(t testing.TB, d *daemon.Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.daemon, e.cancel, e.done = d, cancel, make(chan error, 1)
	go func() { e.done <- d.Serve(ctx) }()
	t.Cleanup(e.stop)

	addrs := d.Addresses()
	ca := filepath.Join(e.dir, "ca.pem")
	e.tlsOpts = client.Options{Address: addrs["tcp"], CertFile: e.clientCert, KeyFile: e.clientKey, CAFile: ca}
	e.untrusted = client.Options{Address: addrs["tcp"], CertFile: e.rogueCert, KeyFile: e.rogueKey, CAFile: ca}
	e.unix = dial(t, client.Options{Socket: addrs["unix"]})
	e.mtls = dial(t, e.tlsOpts)
}

// stop shuts the daemon down and waits for Serve to return.
func (e *env) stop() {
	e.cancel()
	<-e.done
	e.done <- nil // a second stop returns at once
}

func dial(t testing.TB, opts client.Options) *client.Client {
	t.Helper()
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawNoCertCall makes a TLS connection that offers no client certificate.
func rawNoCertCall(t testing.TB, e *env) (*portvaktv1.GetTokenResponse, error) {
	t.Helper()
	caPEM, err := os.ReadFile(e.tlsOpts.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(e.tlsOpts.Address, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return portvaktv1.NewTokenServiceClient(conn).GetToken(t.Context(), &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}})
}

// connOf is a plain gRPC connection to the daemon's Unix socket, for the
// health and reflection services.
func connOf(t testing.TB, e *env) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+e.daemon.Addresses()["unix"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func mpsimLatency(d time.Duration) mpsim.Faults { return mpsim.Faults{Latency: d} }

func statusOf(err error) (*status.Status, bool) { return status.FromError(err) }

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// resolveDevelopmentHSMs does for a test what `portvakt serve` does for a
// configuration: SoftHSM2's directory and module filled in.
func resolveDevelopmentHSMs(cfg *config.Config) error {
	for i := range cfg.HSMs {
		h := &cfg.HSMs[i]
		var err error
		if h.Module, err = softhsm.Resolve(h.SoftHSMDir, h.Module); err != nil {
			return fmt.Errorf("HSM %s: %w", h.Name, err)
		}
	}
	return nil
}
