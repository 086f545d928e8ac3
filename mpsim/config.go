package mpsim

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/portvakt/portvakt/orgno"
)

// Defaults applied by New to zero Config fields. They are Maskinporten's own
// values: tokens live 120 s unless a scope says otherwise, and a grant's iat
// may be at most 10 s from Maskinporten's clock.
const (
	DefaultTokenLifetime = 120 * time.Second
	DefaultClockSkew     = 10 * time.Second
)

// minClientKeyBits is the smallest RSA key accepted for a kid-registered
// client, the same floor devca applies to eSeal keys.
const minClientKeyBits = 2048

// Config describes one simulated Maskinporten environment. Build it in code
// or read it with LoadConfig; New validates it.
type Config struct {
	// Issuer is the simulator's issuer identifier, e.g.
	// "http://127.0.0.1:8089/". It must end with "/", and a grant's aud
	// must equal it exactly, as with the real Maskinporten.
	Issuer string
	// BaseURL is where the simulator is reachable, when that is not the
	// issuer: for example an issuer of "https://test.maskinporten.no/" to
	// exercise a client's test settings, served at
	// "http://127.0.0.1:8089/". The metadata's token_endpoint and jwks_uri
	// are built from it, and Handler serves below its path. Empty means
	// Issuer.
	BaseURL string
	// TokenLifetime is the expires_in of issued access tokens, a whole
	// number of seconds. Zero means DefaultTokenLifetime.
	TokenLifetime time.Duration
	// TrustRoots are the CA certificates an x5c chain must verify to. A
	// production Maskinporten trusts Buypass and Commfides; a test
	// simulator typically trusts a devca root.
	TrustRoots []*x509.Certificate
	// Clients are the registered integrations.
	Clients []Client
	// Delegations say which consumer organisations have delegated which
	// scopes to which supplier clients (Altinn delegation in production).
	Delegations []Delegation
	// ConsumerAccess says which scopes an API owner has granted to a
	// consumer organisation itself, for the organisations it lists. A
	// delegated grant (consumer_org) for a scope the consumer lacks is
	// refused with MP-250. For an organisation not listed, the simulator
	// cannot know its own access and assumes it has whatever it
	// delegated: every missing delegation is then MP-251.
	ConsumerAccess []ConsumerAccess
	// SystemUsers are the Altinn system users customers have created for
	// suppliers' systems, which a grant asks for with
	// authorization_details.
	SystemUsers []SystemUser
	// ClockSkew is the largest allowed |iat - now|. Zero means
	// DefaultClockSkew.
	ClockSkew time.Duration
	// ClockOffset sets the simulator's clock ahead of (or, negative,
	// behind) the real one: its time is the real time (or the clock set
	// with Server.SetClock) plus the offset. Every check of iat, exp and
	// certificate validity, the iat and exp of issued tokens and the HTTP
	// Date header of every response use the simulator's time, so a
	// client's clock can be made to be off, as against a Maskinporten
	// whose clock differs from the client's. Change it with
	// Server.SetClockOffset.
	ClockOffset time.Duration
	// Faults are injected from the start; change them with
	// Server.SetFaults.
	Faults Faults
	// KeyActivationDelay is how long a key registered through the
	// self-service API takes before grants with its kid are accepted:
	// Maskinporten's token endpoint learns of a new key within about two
	// minutes. Zero: at once.
	KeyActivationDelay time.Duration
	// RegisteredKeyLifetime is how long a key registered through the
	// self-service API is accepted; zero means a year
	// (DefaultRegisteredKeyLifetime), Maskinporten's limit.
	RegisteredKeyLifetime time.Duration
	// SigningKey signs issued access tokens: an *rsa.PrivateKey signs
	// with RS256, as Maskinporten does, and an *ecdsa.PrivateKey on P-256
	// with ES256, for a benchmark that shares its cores with the
	// simulator and would rather not spend a millisecond of them on each
	// token's RSA signature. Nil means New generates a fresh RSA-2048
	// key; set it to keep tokens verifiable across restarts or to spare
	// tests the key generation.
	SigningKey crypto.Signer
	// Logger receives one line per request: method, path, status, MP code,
	// client id, jti and trace id, never an assertion or a token. Nil
	// means no logging.
	Logger *slog.Logger
}

// Client is a registered integration (a "klient" in Samarbeidsportalen).
type Client struct {
	// ID is the client id, which a grant carries as iss.
	ID string
	// OrgNumber is the organisation owning the integration; an x5c
	// grant's certificate must carry the same number.
	OrgNumber orgno.Number
	// Scopes are the scopes granted to the client.
	Scopes []string
	// Keys are the public keys registered on the integration, by kid, for
	// grants with a kid header instead of x5c. They must be RSA keys of at
	// least 2048 bits. Nil means the client authenticates with x5c only.
	Keys map[string]crypto.PublicKey
}

// Delegation records that the organisation ConsumerOrg has delegated Scopes
// to the supplier client SupplierClientID, which may then ask for them with
// consumer_org set.
type Delegation struct {
	ConsumerOrg      orgno.Number
	SupplierClientID string
	Scopes           []string
}

// ConsumerAccess records the scopes an organisation has been granted by
// the APIs' owners (in Maskinporten: PUT /scopes/access/{orgno}).
type ConsumerAccess struct {
	Org    orgno.Number
	Scopes []string
}

// SystemUser is a customer's system user for a supplier's system, as Altinn registers it.
type SystemUser struct {
	ClientID    string       // the supplier's Maskinporten client (integration) id
	SystemID    string       // e.g. "123456789_systemid"
	Customer    orgno.Number // the customer organisation that created the system user
	ExternalRef string       // optional; "" means the customer's organisation number (Altinn's default)
	ID          string       // the system user's id (a UUID); New generates one when empty
}

// externalRef is the reference a grant must carry (or leave out, for the
// default): Altinn's default is the customer's organisation number.
func (u SystemUser) externalRef() string {
	if u.ExternalRef == "" {
		return u.Customer.String()
	}
	return u.ExternalRef
}

// validate checks cfg and fills in defaults. With issuerOptional, an empty
// Issuer is accepted, for LoadConfig, whose caller may set the issuer after
// learning its listen address.
func (cfg *Config) validate(issuerOptional bool) error {
	var errs []error
	if cfg.Issuer != "" || !issuerOptional {
		if err := validateIssuer(cfg.Issuer); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.BaseURL != "" {
		if err := validateBaseURL("base URL", cfg.BaseURL); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.TokenLifetime < time.Second || cfg.TokenLifetime%time.Second != 0 {
		errs = append(errs, fmt.Errorf("token lifetime %s: must be a positive whole number of seconds, because expires_in is given in seconds (e.g. 120s)", cfg.TokenLifetime))
	}
	if cfg.RegisteredKeyLifetime == 0 {
		cfg.RegisteredKeyLifetime = DefaultRegisteredKeyLifetime
	}
	if cfg.KeyActivationDelay < 0 || cfg.RegisteredKeyLifetime < 0 || cfg.RegisteredKeyLifetime > DefaultRegisteredKeyLifetime {
		errs = append(errs, fmt.Errorf("key activation delay %s and registered key lifetime %s: neither may be negative, and a key lives at most a year", cfg.KeyActivationDelay, cfg.RegisteredKeyLifetime))
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.ClockSkew < 0 {
		errs = append(errs, fmt.Errorf("clock skew %s: must not be negative (Maskinporten allows 10s)", cfg.ClockSkew))
	}
	if err := validateSigningKey(cfg.SigningKey); err != nil {
		errs = append(errs, err)
	}
	for i, root := range cfg.TrustRoots {
		if root == nil {
			errs = append(errs, fmt.Errorf("trust root %d is nil", i))
		}
	}
	if err := cfg.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cfg.validateClients()...)
	errs = append(errs, cfg.validateDelegations()...)
	errs = append(errs, cfg.validateConsumerAccess()...)
	errs = append(errs, cfg.validateSystemUsers()...)
	return errors.Join(errs...)
}

// validateIssuer checks that issuer is an absolute http(s) URL ending in
// "/", the form the real issuers have; aud is compared with it byte for
// byte, so a missing slash here would make every correct grant fail.
func validateIssuer(issuer string) error {
	if issuer == "" {
		return errors.New("issuer is empty; set it to the simulator's base URL with a trailing slash, e.g. http://127.0.0.1:8089/")
	}
	return validateBaseURL("issuer", issuer)
}

// validateBaseURL checks that v, the setting called name, is an absolute
// http(s) URL ending in "/", so that "token" and "jwk" can be appended.
func validateBaseURL(name, v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("%s %q is not a URL: %w", name, v, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q must be an absolute http:// or https:// URL, e.g. http://127.0.0.1:8089/", name, v)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%s %q must not have user info, a query or a fragment", name, v)
	}
	if !strings.HasSuffix(v, "/") {
		return fmt.Errorf("%s %q must end with \"/\", as Maskinporten's issuers do; use %q", name, v, v+"/")
	}
	return nil
}

// validateClients checks every client and says which one is wrong.
func (cfg *Config) validateClients() []error {
	var errs []error
	if len(cfg.Clients) == 0 {
		errs = append(errs, errors.New("no clients are configured; add at least one client with client_id, org_number and scopes"))
	}
	seen := make(map[string]bool, len(cfg.Clients))
	for i, c := range cfg.Clients {
		name := fmt.Sprintf("client %d", i+1)
		if c.ID == "" {
			errs = append(errs, fmt.Errorf("%s has no client id", name))
		} else {
			name = fmt.Sprintf("client %q", c.ID)
			if seen[c.ID] {
				errs = append(errs, fmt.Errorf("%s is configured more than once; client ids must be unique", name))
			}
			seen[c.ID] = true
		}
		// OrgNumber may have been converted rather than parsed.
		if _, err := orgno.Parse(c.OrgNumber.String()); err != nil {
			errs = append(errs, fmt.Errorf("%s: org number: %w", name, err))
		}
		if len(c.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("%s has no scopes; grant it at least one", name))
		}
		for _, sc := range c.Scopes {
			if err := validateScopeName(sc); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		for kid, key := range c.Keys {
			if err := validateClientKey(kid, key); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		if len(c.Keys) == 0 && len(cfg.TrustRoots) == 0 {
			errs = append(errs, fmt.Errorf("%s has no keys and no trust roots are configured, so it could never authenticate; add trust_roots (for x5c grants) or keys (for kid grants)", name))
		}
	}
	return errs
}

// validateScopeName rejects names that could never be requested, because a
// grant's scope claim is split on spaces.
func validateScopeName(scope string) error {
	if scope == "" || strings.ContainsFunc(scope, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("scope %q must be non-empty and contain no spaces or control characters", scope)
	}
	return nil
}

// validateClientKey checks a kid-registered key: grants are RS256/384/512,
// so only RSA keys can ever verify one.
func validateClientKey(kid string, key crypto.PublicKey) error {
	if kid == "" {
		return errors.New("a key has an empty kid")
	}
	rsaKey, ok := key.(*rsa.PublicKey)
	if !ok || rsaKey == nil || rsaKey.N == nil {
		return fmt.Errorf("key %q is %T; it must be an RSA public key, since grants are signed RS256, RS384 or RS512", kid, key)
	}
	if bits := rsaKey.N.BitLen(); bits < minClientKeyBits {
		return fmt.Errorf("key %q has %d bits; it must have at least %d", kid, bits, minClientKeyBits)
	}
	return nil
}

// validateDelegations checks that each delegation names a valid consumer,
// a known supplier, and only scopes that supplier has: Maskinporten cannot
// issue a delegated token for a scope the supplier was never granted.
func (cfg *Config) validateDelegations() []error {
	clients := make(map[string]*Client, len(cfg.Clients))
	for i := range cfg.Clients {
		clients[cfg.Clients[i].ID] = &cfg.Clients[i]
	}
	var errs []error
	for i, d := range cfg.Delegations {
		name := fmt.Sprintf("delegation %d (consumer %q to supplier %q)", i+1, d.ConsumerOrg, d.SupplierClientID)
		if _, err := orgno.Parse(d.ConsumerOrg.String()); err != nil {
			errs = append(errs, fmt.Errorf("%s: consumer org: %w", name, err))
		}
		supplier, ok := clients[d.SupplierClientID]
		if !ok {
			errs = append(errs, fmt.Errorf("%s names supplier client %q, which is not configured; add it to clients or fix the id", name, d.SupplierClientID))
		}
		if len(d.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("%s delegates no scopes", name))
		}
		for _, sc := range d.Scopes {
			if ok && !slices.Contains(supplier.Scopes, sc) {
				errs = append(errs, fmt.Errorf("%s delegates scope %q, which supplier client %q does not have; add it to the client's scopes", name, sc, d.SupplierClientID))
			}
		}
	}
	return errs
}

// validateConsumerAccess checks that each entry names a valid organisation,
// once, and only well-formed scopes.
func (cfg *Config) validateConsumerAccess() []error {
	var errs []error
	seen := make(map[orgno.Number]bool, len(cfg.ConsumerAccess))
	for i, a := range cfg.ConsumerAccess {
		name := fmt.Sprintf("consumer access %d (org %q)", i+1, a.Org)
		if _, err := orgno.Parse(a.Org.String()); err != nil {
			errs = append(errs, fmt.Errorf("%s: org: %w", name, err))
		}
		if seen[a.Org] {
			errs = append(errs, fmt.Errorf("%s: the organisation is listed more than once; list all its scopes in one entry", name))
		}
		seen[a.Org] = true
		for _, sc := range a.Scopes {
			if err := validateScopeName(sc); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	return errs
}

// validateSystemUsers checks that each system user belongs to a configured
// client, names a system and a valid customer, has a UUID if it has an id,
// and that no two could answer the same grant.
func (cfg *Config) validateSystemUsers() []error {
	clients := make(map[string]bool, len(cfg.Clients))
	for _, c := range cfg.Clients {
		clients[c.ID] = true
	}
	type key struct {
		client   string
		customer orgno.Number
		ref      string
	}
	var errs []error
	seen := make(map[key]bool, len(cfg.SystemUsers))
	ids := make(map[string]bool, len(cfg.SystemUsers))
	for i, u := range cfg.SystemUsers {
		name := fmt.Sprintf("system user %d (client %q, customer %q)", i+1, u.ClientID, u.Customer)
		if !clients[u.ClientID] {
			errs = append(errs, fmt.Errorf("%s names client %q, which is not configured; add it to clients or fix the id", name, u.ClientID))
		}
		if u.SystemID == "" {
			errs = append(errs, fmt.Errorf("%s has no system id; Altinn's are the supplier's organisation number, \"_\" and a name, e.g. 991825827_portvakt", name))
		}
		if _, err := orgno.Parse(u.Customer.String()); err != nil {
			errs = append(errs, fmt.Errorf("%s: customer: %w", name, err))
		}
		if u.ID != "" {
			if _, err := uuid.Parse(u.ID); err != nil {
				errs = append(errs, fmt.Errorf("%s: id %q is not a UUID; leave it empty to have one made", name, u.ID))
			} else if ids[u.ID] {
				errs = append(errs, fmt.Errorf("%s: id %q is used by another system user", name, u.ID))
			}
			ids[u.ID] = true
		}
		k := key{u.ClientID, u.Customer, u.externalRef()}
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s with external ref %q is configured more than once; Altinn allows one system user per system, customer and external ref", name, k.ref))
		}
		seen[k] = true
	}
	return errs
}
