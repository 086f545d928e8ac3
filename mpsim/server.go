package mpsim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/portvakt/portvakt/orgno"
)

// Server is a simulated Maskinporten. Create it with New; serve it with
// Handler. All methods are safe for concurrent use.
type Server struct {
	cfg     Config // validated, defaults applied
	clients map[string]*registeredClient
	// delegations maps consumer org → scope → supplier client ids.
	delegations map[orgno.Number]map[string]map[string]bool
	// access maps the organisations of Config.ConsumerAccess to their
	// own scopes; an organisation absent here is not known.
	access map[orgno.Number]map[string]bool
	// systemUsers are Config.SystemUsers with their ids filled in.
	systemUsers []SystemUser
	roots       *x509.CertPool
	chains      trustedChains // x5c chains found trusted
	registry    registry      // registered keys
	key         crypto.Signer // an *rsa.PrivateKey or a P-256 *ecdsa.PrivateKey (validateSigningKey)
	method      jwt.SigningMethod
	kid         string
	parser      *jwt.Parser

	clock  atomic.Pointer[func() time.Time]
	offset atomic.Int64 // a time.Duration added to clock
	faults atomic.Pointer[Faults]

	mu        sync.Mutex
	stats     Stats
	burned    map[string]time.Time // accepted jti → its grant's exp
	lastPrune time.Time
}

// registeredClient is a Client indexed for the checks.
type registeredClient struct {
	Client
	scopes map[string]bool
}

// signingKeyBits is the size of the access-token signing key New makes,
// Maskinporten's own size.
const signingKeyBits = 2048

// New validates cfg and returns a server for it. Errors list everything
// wrong in cfg at once, each saying what to fix.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(false); err != nil {
		return nil, fmt.Errorf("mpsim: invalid configuration: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		clients:     make(map[string]*registeredClient, len(cfg.Clients)),
		delegations: make(map[orgno.Number]map[string]map[string]bool),
		access:      make(map[orgno.Number]map[string]bool, len(cfg.ConsumerAccess)),
		systemUsers: slices.Clone(cfg.SystemUsers),
		roots:       x509.NewCertPool(),
		key:         cfg.SigningKey,
		burned:      make(map[string]time.Time),
		stats:       Stats{Refused: make(map[string]int), Resources: make(map[string]int)},
		// The library's claim validation is off: Maskinporten's rules
		// (exact aud, |iat-now| ≤ skew, exp-iat ≤ 120 s) differ from its
		// defaults and must yield specific MP codes, so checks.go does
		// them. JSON numbers keep iat/exp exact and let a string be told
		// from a number.
		parser: jwt.NewParser(
			jwt.WithValidMethods(supportedAlgs),
			jwt.WithoutClaimsValidation(),
			jwt.WithJSONNumber(),
			jwt.WithStrictDecoding(),
		),
	}
	for _, root := range cfg.TrustRoots {
		s.roots.AddCert(root)
	}
	for _, c := range cfg.Clients {
		rc := &registeredClient{Client: c, scopes: make(map[string]bool, len(c.Scopes))}
		// Copies, so a caller changing its Config later changes nothing.
		rc.Scopes = slices.Clone(c.Scopes)
		rc.Keys = nil // the registry has them
		s.registry.fixture(c.ID, c.Keys)
		for _, sc := range c.Scopes {
			rc.scopes[sc] = true
		}
		s.clients[c.ID] = rc
	}
	for _, d := range cfg.Delegations {
		byScope := s.delegations[d.ConsumerOrg]
		if byScope == nil {
			byScope = make(map[string]map[string]bool)
			s.delegations[d.ConsumerOrg] = byScope
		}
		for _, sc := range d.Scopes {
			if byScope[sc] == nil {
				byScope[sc] = make(map[string]bool)
			}
			byScope[sc][d.SupplierClientID] = true
		}
	}
	for _, a := range cfg.ConsumerAccess {
		scopes := make(map[string]bool, len(a.Scopes))
		for _, sc := range a.Scopes {
			scopes[sc] = true
		}
		s.access[a.Org] = scopes
	}
	for i := range s.systemUsers {
		if s.systemUsers[i].ID == "" {
			s.systemUsers[i].ID = uuid.NewString()
		}
	}
	if s.key == nil {
		key, err := rsa.GenerateKey(rand.Reader, signingKeyBits)
		if err != nil {
			return nil, fmt.Errorf("mpsim: generating token signing key: %w", err)
		}
		s.key = key
	}
	s.method, s.kid = signingMethod(s.key), thumbprint(s.key.Public())
	s.SetClock(nil)
	s.SetClockOffset(cfg.ClockOffset)
	s.faults.Store(&cfg.Faults)
	return s, nil
}

// SystemUsers returns the configured system users, with the ids New made
// for those that had none.
func (s *Server) SystemUsers() []SystemUser { return slices.Clone(s.systemUsers) }

// Issuer returns the issuer identifier the server was configured with.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// SetClock replaces the clock used for grant times, certificate validity,
// token times and the Date header, so tests can move time; nil restores
// time.Now. The clock offset is added to it.
func (s *Server) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.clock.Store(&now)
}

// SetClockOffset sets the simulator's clock d ahead of the clock (d < 0:
// behind), replacing Config.ClockOffset. It is safe to call while the
// server is serving and takes effect for the next time the simulator
// reads its clock.
func (s *Server) SetClockOffset(d time.Duration) { s.offset.Store(int64(d)) }

// ClockOffset returns the offset set with Config.ClockOffset or
// SetClockOffset.
func (s *Server) ClockOffset() time.Duration { return time.Duration(s.offset.Load()) }

// now is the simulator's time: its clock plus its offset.
func (s *Server) now() time.Time {
	return (*s.clock.Load())().Add(time.Duration(s.offset.Load()))
}

// PublicKeys returns the keys that sign access tokens, by kid, as /jwk
// publishes them, so tests can verify issued tokens without HTTP.
func (s *Server) PublicKeys() map[string]crypto.PublicKey {
	return map[string]crypto.PublicKey{s.kid: s.key.Public()}
}

// BaseURL returns where the server says it is reachable: Config.BaseURL,
// or the issuer.
func (s *Server) BaseURL() string {
	if s.cfg.BaseURL != "" {
		return s.cfg.BaseURL
	}
	return s.cfg.Issuer
}

// Handler returns the simulator's HTTP handler. It serves, below the base
// URL's path (normally "/"): token, .well-known/oauth-authorization-server
// and jwk. Every response carries an X-Trace-Id header and a Date header
// from the simulator's clock.
func (s *Server) Handler() http.Handler {
	// Validated as a URL in New.
	u, _ := url.Parse(s.BaseURL())
	base := u.Path
	if base == "" {
		base = "/"
	}
	mux := http.NewServeMux()
	mux.HandleFunc(base+"token", s.serveToken)
	mux.HandleFunc(base+".well-known/oauth-authorization-server", s.serveMetadata)
	mux.HandleFunc(base+"jwk", s.serveJWKS)
	mux.HandleFunc(base+SelfServicePath+"clients/{client_id}/jwks", s.serveClientJWKS)
	return s.traced(mux)
}
