package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/mpsim"
	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/softhsm"
)

// The simulator's registrations and the policy's client.
const (
	clientID       = "portvakt-bench"
	ownOrg         = "991825827" // the eSeal's (Digdir's number: a valid check digit)
	scopeOwn       = "bench:api/own"
	scopeDelegated = "bench:api/cold.delegert"
	spiffeID       = "spiffe://portvakt.bench/ns/bench/sa/load"
	keyLabel       = "eseal"
	environment    = "sim"
	pinEnv         = "PORTVAKT_BENCH_PIN"
)

// world is everything the daemon runs on: a state directory with its
// configuration, the SoftHSM2 token, and the simulator serving over HTTP.
type world struct {
	dir       string // the daemon's state directory
	cfgFile   string
	socket    string
	tcpAddr   string
	metrics   string // host:port of the daemon's metrics
	token     hsm.Token
	sim       *mpsim.Server
	listener  *mpsim.Listener
	consumers []orgno.Number
	// mTLS material for the load client.
	caFile, certFile, keyFile string
}

// newWorld prepares a fresh state directory under root. consumers is how
// many consumer organisations have delegated scopeDelegated.
func newWorld(root string, consumers, rsaBits int) (*world, error) {
	w := &world{dir: root, cfgFile: filepath.Join(root, "portvakt.yaml"), socket: filepath.Join(root, "portvakt.sock")}
	hsmDir, err := softhsm.Prepare(filepath.Join(root, "softhsm"))
	if err != nil {
		return nil, err
	}
	// The bare-signature rounds open the token in this process too.
	if err := hsmDir.Activate(); err != nil {
		return nil, err
	}
	module, err := softhsm.FindModule()
	if err != nil {
		return nil, err
	}
	userPIN, _ := secret.New(rand.Text()[:16])
	soPIN, _ := secret.New(rand.Text()[:16])
	w.token = hsm.Token{Module: module, Label: "bench", PIN: userPIN}
	if err := hsm.InitToken(module, w.token.Label, soPIN, userPIN); err != nil {
		return nil, fmt.Errorf("initialising the SoftHSM2 token: %w", err)
	}
	ca, err := devca.New("Portvakt Bench")
	if err != nil {
		return nil, err
	}
	if err := w.certifiedKey(ca, rsaBits); err != nil {
		return nil, err
	}
	if w.consumers, err = consumerOrgs(consumers); err != nil {
		return nil, err
	}
	if err := w.startSimulator(ca); err != nil {
		return nil, err
	}
	if err := w.tlsFiles(); err != nil {
		return nil, err
	}
	if err := w.writePolicy(); err != nil {
		return nil, err
	}
	if w.tcpAddr, err = freeAddress(); err != nil {
		return nil, err
	}
	if w.metrics, err = freeAddress(); err != nil {
		return nil, err
	}
	return w, w.writeConfig(hsmDir)
}

// certifiedKey generates the eSeal key in the token and imports its
// certificate: what `portvakt hsm keygen`, `csr` and `import-cert` do.
func (w *world) certifiedKey(ca *devca.CA, bits int) error {
	if _, err := hsm.GenerateKey(w.token, hsm.KeySpec{Label: keyLabel, Bits: bits}); err != nil {
		return fmt.Errorf("generating the eSeal key: %w", err)
	}
	subject := eseal.Subject{OrgNumber: ownOrg, Organization: "Portvakt Bench AS", CommonName: "Portvakt bench eSeal"}
	der, err := hsm.CreateCSR(w.token, hsm.KeySelector{Label: keyLabel}, subject.Name())
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return err
	}
	cert, err := ca.IssueFromCSR(csr, 30*24*time.Hour)
	if err != nil {
		return err
	}
	_, err = hsm.ImportCertificates(w.token, hsm.KeySelector{Label: keyLabel}, append([]*x509.Certificate{cert}, ca.Chain()...), time.Now())
	return err
}

// consumerOrgs are n valid organisation numbers (the orgno package's
// check digit), none of them ownOrg.
func consumerOrgs(n int) ([]orgno.Number, error) {
	orgs := make([]orgno.Number, 0, n)
	for prefix := 92000000; len(orgs) < n; prefix++ {
		if prefix > 99999999 {
			return nil, fmt.Errorf("only %d valid organisation numbers found", len(orgs))
		}
		for digit := range 10 {
			if s := fmt.Sprintf("%08d%d", prefix, digit); orgno.Valid(s) && s != ownOrg {
				orgs = append(orgs, orgno.Number(s))
				break
			}
		}
	}
	return orgs, nil
}

func (w *world) startSimulator(ca *devca.CA) error {
	l, err := mpsim.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	delegations := make([]mpsim.Delegation, len(w.consumers))
	for i, org := range w.consumers {
		delegations[i] = mpsim.Delegation{ConsumerOrg: org, SupplierClientID: clientID, Scopes: []string{scopeDelegated}}
	}
	// The simulator shares these cores with the daemon, and its RSA-2048
	// signature of each token (Maskinporten's RS256) cost it 1.5 ms of
	// them, a third of the HSM's signature of the grant: it signs with
	// ES256 here. Maskinporten's work is not the daemon's; the tokens are
	// some 250 bytes shorter than Maskinporten's, which the cached rounds
	// do not notice.
	tokenKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		_ = l.Close()
		return err
	}
	sim, err := mpsim.New(mpsim.Config{
		Issuer:     l.URL(),
		SigningKey: tokenKey,
		// Longer than a run: no cached token is renewed in the middle
		// of it, so the cached rounds measure the cache alone.
		TokenLifetime: time.Hour,
		TrustRoots:    []*x509.Certificate{ca.Root},
		Clients:       []mpsim.Client{{ID: clientID, OrgNumber: ownOrg, Scopes: []string{scopeOwn, scopeDelegated}}},
		Delegations:   delegations,
	})
	if err != nil {
		_ = l.Close()
		return err
	}
	if err := l.Serve(sim.Handler()); err != nil {
		_ = l.Close()
		return err
	}
	w.sim, w.listener = sim, l
	return nil
}

// tlsFiles writes a CA, the daemon's server certificate and the load
// client's certificate (a SPIFFE id the policy names).
func (w *world) tlsFiles() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Portvakt Bench mTLS CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	w.caFile = filepath.Join(w.dir, "ca.pem")
	if err := writePEM(w.caFile, "CERTIFICATE", caDER); err != nil {
		return err
	}
	issue := func(name string, tmpl *x509.Certificate) (string, string, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		tmpl.SerialNumber, _ = rand.Int(rand.Reader, big.NewInt(1<<62))
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return "", "", err
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		certFile, keyFile := filepath.Join(w.dir, name+".pem"), filepath.Join(w.dir, name+"-key.pem")
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return "", "", err
		}
		return certFile, keyFile, writePEM(keyFile, "PRIVATE KEY", keyDER)
	}
	if _, _, err := issue("server", &x509.Certificate{
		Subject: pkix.Name{CommonName: "portvakt"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return err
	}
	spiffe, _ := url.Parse(spiffeID)
	w.certFile, w.keyFile, err = issue("load", &x509.Certificate{
		Subject: pkix.Name{CommonName: "load"}, URIs: []*url.URL{spiffe},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

// writePolicy lets the load client (by uid on the socket, by SPIFFE id
// on mTLS) have its own scope and the delegated one for every consumer.
func (w *world) writePolicy() error {
	orgs := make([]string, len(w.consumers))
	for i, o := range w.consumers {
		orgs[i] = fmt.Sprintf("%q", o.String())
	}
	policy := fmt.Sprintf(`clients:
  - name: load
    identities: [%q, "uid:%d"]
    rules:
      - environments: [%s]
        scopes: [%q]
      - environments: [%s]
        scopes: [%q]
        consumer_orgs: [%s]
`, spiffeID, os.Getuid(), environment, scopeOwn, environment, scopeDelegated, strings.Join(orgs, ", "))
	return os.WriteFile(filepath.Join(w.dir, "policy.yaml"), []byte(policy), 0o600)
}

// writeConfig is the daemon's configuration: defaults wherever the
// production configuration would leave them (audit synced, log at info).
func (w *world) writeConfig(hsmDir softhsm.Dir) error {
	cfg := fmt.Sprintf(`listen:
  unix: {path: portvakt.sock}
  tcp: {address: %q, cert_file: server.pem, key_file: server-key.pem, client_ca_file: ca.pem}
hsm: {softhsm_dir: %q, token: %q, pin: {env: %s}}
environments:
  - {name: %s, issuer: %q, token_endpoint: %q, client_id: %q, key_label: %s}
policy: policy.yaml
audit: {file: audit/audit.log}
metrics: {address: %q}
`, w.tcpAddr, string(hsmDir), w.token.Label, pinEnv, environment, w.listener.URL(), w.listener.URL()+"token", clientID, keyLabel, w.metrics)
	return os.WriteFile(w.cfgFile, []byte(cfg), 0o600)
}

func (w *world) close() {
	if w.listener != nil {
		_ = w.listener.Close()
	}
}

// freeAddress is a loopback address with a port free a moment ago.
func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}
