// Package mptest sets up, for tests, a world in which tokens can be had
// for real: a SoftHSM2 token holding a certified eSeal key, a signer on
// it that counts its signatures, and the Maskinporten simulator on a
// loopback socket trusting the eSeal's CA. It does not import the
// maskinporten package, so that package's own tests can use it.
//
// Test binaries using it must run softhsmtest.Main from TestMain.
package mptest

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"io"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/devca"
	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/mpsim"
	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// The simulator's registrations.
const (
	ClientID    = "portvakt-test"
	OwnOrg      = softhsmtest.TestOrgNumber // 991825827, the eSeal's
	ConsumerOrg = "974760673"               // has delegated ScopeDelegated to ClientID
	StrangerOrg = "971032081"               // has delegated nothing
	OtherClient = "other-supplier"

	// An Altinn system user: SystemUserCustomer has created one for
	// ClientID's system SystemID, with the external ref
	// SystemUserExternalRef and the id SystemUserID (DefaultSystemUser).
	SystemUserCustomer    = "313775429"
	SystemUserExternalRef = "portvakt-kunde-1"
	SystemID              = OwnOrg + "_portvakt"
	SystemUserID          = "0b7e3c52-5f0e-4a8e-9a39-3f1c2d6b8e41"

	ScopeOwn        = "svv:kjoretoy/ecoc"
	ScopeDelegated  = "svv:kjoretoy/ecoc.delegert"
	ScopeElsewhere  = "svv:kjoretoy/leasingtaker.delegert" // delegated by ConsumerOrg to OtherClient only
	ScopeNotGranted = "svv:kjoretoy/forstegangsregistrering"
)

// CountingSigner counts signatures: each is one use of the HSM key.
type CountingSigner struct {
	*signer.Signer
	signs atomic.Int64
}

// Sign counts and signs.
func (c *CountingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.signs.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// Signs is how many signatures were made.
func (c *CountingSigner) Signs() int64 { return c.signs.Load() }

// World is the token, the signer and the simulator.
type World struct {
	CA    *devca.CA
	Token softhsmtest.Token
	// Chain is the eSeal's certificate and its chain.
	Chain []*x509.Certificate
	// Signer is nil with Options.NoSigner.
	Signer   *CountingSigner
	Sim      *mpsim.Server
	Issuer   string
	Endpoint string
	// Listener serves Sim; Down and Up take it away and bring it back on
	// the same address.
	Listener *mpsim.Listener
}

// Options change the simulator's configuration.
type Options struct {
	TokenLifetime time.Duration
	// NoSigner leaves the world without a signer of its own, for tests of a
	// daemon in this process that must be the module's only user: a module
	// is initialised once per process, and a context held here would keep
	// it from being finalised and initialised again after an outage, as a
	// daemon alone in its process can.
	NoSigner bool
	// ClockOffset sets the simulator's clock this far ahead of the real
	// one (negative: behind), as mpsim.Config.ClockOffset; change it later
	// with World.Sim.SetClockOffset.
	ClockOffset time.Duration
	// SystemUsers are registered in the simulator, for ClientID where
	// their ClientID is empty. Nil means DefaultSystemUser alone; an
	// empty, non-nil slice means none.
	SystemUsers []mpsim.SystemUser
	// ESealKID registers the eSeal's key on ClientID under this kid, for
	// grants with kid (and x5c beside it); empty means none.
	ESealKID string
	// RegisteredKeys, when set, is called with the world's token before
	// the simulator starts; the keys it returns are registered on
	// ClientID by kid, as ESealKID's is, and accepted at once.
	RegisteredKeys func(t testing.TB, tok softhsmtest.Token) map[string]crypto.PublicKey
	// OtherClientKeys is RegisteredKeys for OtherClient.
	OtherClientKeys func(t testing.TB, tok softhsmtest.Token) map[string]crypto.PublicKey
	// KeyActivationDelay is mpsim.Config.KeyActivationDelay: how long a
	// key registered through the self-service API waits to be accepted.
	KeyActivationDelay time.Duration
	// RegisteredKeyLifetime is mpsim.Config.RegisteredKeyLifetime: how
	// long a key registered through the self-service API is accepted.
	RegisteredKeyLifetime time.Duration
}

// DefaultSystemUser is the system user a world has unless
// Options.SystemUsers says otherwise.
func DefaultSystemUser() mpsim.SystemUser {
	return mpsim.SystemUser{
		ClientID:    ClientID,
		SystemID:    SystemID,
		Customer:    SystemUserCustomer,
		ExternalRef: SystemUserExternalRef,
		ID:          SystemUserID,
	}
}

// New builds a world; everything is closed when the test ends.
func New(t testing.TB, opts Options) *World {
	t.Helper()
	ca, err := devca.New("Simulator Test")
	if err != nil {
		t.Fatal(err)
	}
	tok := softhsmtest.NewToken(t)
	chain := tok.NewCertifiedKey(t, "eseal", ca)
	var counting *CountingSigner
	if !opts.NoSigner {
		counting = &CountingSigner{Signer: OpenSigner(t, tok, "eseal")}
	}

	l, err := mpsim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	issuer := l.URL()
	systemUsers := []mpsim.SystemUser{DefaultSystemUser()}
	if opts.SystemUsers != nil {
		systemUsers = make([]mpsim.SystemUser, len(opts.SystemUsers))
		for i, u := range opts.SystemUsers {
			if u.ClientID == "" {
				u.ClientID = ClientID
			}
			systemUsers[i] = u
		}
	}
	keys := map[string]crypto.PublicKey{}
	if opts.ESealKID != "" {
		keys[opts.ESealKID] = chain[0].PublicKey
	}
	if opts.RegisteredKeys != nil {
		maps.Copy(keys, opts.RegisteredKeys(t, tok))
	}
	var otherKeys map[string]crypto.PublicKey
	if opts.OtherClientKeys != nil {
		otherKeys = opts.OtherClientKeys(t, tok)
	}
	sim, err := mpsim.New(mpsim.Config{
		Issuer:                issuer,
		TokenLifetime:         opts.TokenLifetime,
		ClockOffset:           opts.ClockOffset,
		KeyActivationDelay:    opts.KeyActivationDelay,
		RegisteredKeyLifetime: opts.RegisteredKeyLifetime,
		TrustRoots:            []*x509.Certificate{ca.Root},
		Clients: []mpsim.Client{
			// The self-service scopes too, for the API that holds ClientID's
			// registered keys.
			{ID: ClientID, OrgNumber: OwnOrg, Scopes: []string{ScopeOwn, ScopeDelegated, ScopeElsewhere, mpsim.ScopeDCRRead, mpsim.ScopeDCRModify}, Keys: keys},
			{ID: OtherClient, OrgNumber: "971526920", Scopes: []string{ScopeElsewhere}, Keys: otherKeys},
		},
		Delegations: []mpsim.Delegation{
			{ConsumerOrg: ConsumerOrg, SupplierClientID: ClientID, Scopes: []string{ScopeDelegated}},
			{ConsumerOrg: ConsumerOrg, SupplierClientID: OtherClient, Scopes: []string{ScopeElsewhere}},
		},
		SystemUsers: systemUsers,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Serve(sim.Handler()); err != nil {
		t.Fatal(err)
	}
	return &World{CA: ca, Token: tok, Chain: chain, Signer: counting, Sim: sim, Issuer: issuer, Endpoint: issuer + "token", Listener: l}
}

// Down takes the simulator away, as a Maskinporten outage does:
// connecting to it is refused, and requests in flight lose their
// connection. Up brings it back.
func (w *World) Down(t testing.TB) {
	t.Helper()
	if err := w.Listener.Down(); err != nil {
		t.Fatal(err)
	}
}

// Up serves the simulator again on the address it had.
func (w *World) Up(t testing.TB) {
	t.Helper()
	if err := w.Listener.Up(); err != nil {
		t.Fatal(err)
	}
}

// OpenSigner opens a key of the token; it is closed when the test ends.
func OpenSigner(t testing.TB, tok softhsmtest.Token, label string) *signer.Signer {
	t.Helper()
	s, err := signer.Open(signer.Config{
		Token: signer.TokenConfig{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN},
		Key:   signer.KeyConfig{KeyLabel: label},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// CertifiedKeyFor adds a key to the token certified by the world's CA for
// another organisation, and opens it.
func (w *World) CertifiedKeyFor(t testing.TB, label, org string) *signer.Signer {
	t.Helper()
	w.Token.NewKey(t, label)
	chain := w.Certify(t, label, eseal.Subject{OrgNumber: orgno.Number(org), Organization: "Foreign AS"}, 24*time.Hour)
	if _, err := hsm.ImportCertificates(w.Token.Token, hsm.KeySelector{Label: label}, chain, time.Now()); err != nil {
		t.Fatal(err)
	}
	return OpenSigner(t, w.Token, label)
}

// Certify has the world's CA certify the token's key label for subject,
// valid for validity from now (a CSR signed in the HSM), and returns the
// chain, the key's certificate first.
func (w *World) Certify(t testing.TB, label string, subject eseal.Subject, validity time.Duration) []*x509.Certificate {
	t.Helper()
	der, err := hsm.CreateCSR(w.Token.Token, hsm.KeySelector{Label: label}, subject.Name())
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := w.CA.IssueFromCSR(csr, validity)
	if err != nil {
		t.Fatal(err)
	}
	return append([]*x509.Certificate{cert}, w.CA.Chain()...)
}

// ESealChainPEM is the test eSeal's key (label eseal) certified again,
// valid for validity from now, as a PEM chain for certificate_file: a
// certificate near its end without waiting for it.
func (w *World) ESealChainPEM(t testing.TB, validity time.Duration) []byte {
	t.Helper()
	subject := eseal.Subject{OrgNumber: orgno.Number(softhsmtest.TestOrgNumber), Organization: "Portvakt Test AS", CommonName: "Portvakt soon expiring eSeal"}
	var chain []byte
	for _, c := range w.Certify(t, "eseal", subject, validity) {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return chain
}
