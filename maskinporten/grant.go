package maskinporten

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/syntax"
)

// MaxGrantLifetime is the longest exp - iat Maskinporten accepts.
const MaxGrantLifetime = 120 * time.Second

// DefaultGrantLifetime leaves room for clock skew and a slow network: the
// grant is used within seconds of being made.
const DefaultGrantLifetime = 60 * time.Second

// KeySigner signs in the HSM and knows its certificate chain (the leaf
// first). *signer.Signer is one.
type KeySigner interface {
	crypto.Signer
	Chain() []*x509.Certificate
}

// GrantBuilder makes JWT grants signed by the enterprise certificate's key.
type GrantBuilder struct {
	signer KeySigner
	method hsmMethod
	// header is the JWS header's encoded segment, made once: the
	// algorithm, the kid and the certificate chain (x5c, some kilobytes
	// of base64) are the same on every grant.
	header   string
	keyID    string
	sendsX5C bool
	lifetime time.Duration
	now      func() time.Time
}

// GrantOptions tune a GrantBuilder; the zero value is right for Maskinporten.
type GrantOptions struct {
	// Alg is RS256 (default), RS384 or RS512.
	Alg string
	// KeyID, when set, is sent as kid for a key pre-registered on the
	// integration, instead of the certificate chain in x5c.
	KeyID string
	// KeyIDWithX5C sends the certificate chain in x5c beside KeyID, which
	// pins the registered key to the enterprise certificate.
	KeyIDWithX5C bool
	// Lifetime is exp - iat; default DefaultGrantLifetime, at most 120 s.
	Lifetime time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewGrantBuilder checks the options against what Maskinporten accepts.
func NewGrantBuilder(signer KeySigner, opts GrantOptions) (*GrantBuilder, error) {
	if opts.Alg == "" {
		opts.Alg = "RS256"
	}
	method, ok := algorithms[opts.Alg]
	if !ok {
		return nil, fmt.Errorf("grant algorithm %q: Maskinporten accepts RS256, RS384 and RS512", opts.Alg)
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = DefaultGrantLifetime
	}
	if opts.Lifetime < 0 || opts.Lifetime > MaxGrantLifetime {
		return nil, fmt.Errorf("grant lifetime %s: it must be positive and at most %s", opts.Lifetime, MaxGrantLifetime)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &GrantBuilder{signer: signer, method: method, keyID: opts.KeyID, lifetime: opts.Lifetime, now: opts.Now}
	if opts.KeyIDWithX5C && opts.KeyID == "" {
		return nil, errors.New("x5c beside kid needs a kid (a registered key's id)")
	}
	var x5c []string
	if b.keyID == "" || opts.KeyIDWithX5C {
		chain := signer.Chain()
		if len(chain) == 0 {
			return nil, errors.New("the signer has no certificate: x5c needs the enterprise certificate (or give a pre-registered key id)")
		}
		for _, c := range chain {
			// Standard base64, not base64url: RFC 7517 §4.7.
			x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
		}
	}
	var err error
	b.sendsX5C = len(x5c) > 0
	if b.header, err = encodeHeader(method.Alg(), b.keyID, x5c); err != nil {
		return nil, err
	}
	return b, nil
}

// encodeHeader is the JWS header segment golang-jwt would make for each
// grant: typ and alg, and kid and x5c when given.
func encodeHeader(alg, keyID string, x5c []string) (string, error) {
	header := map[string]any{"typ": "JWT", "alg": alg}
	if keyID != "" {
		header["kid"] = keyID
	}
	if len(x5c) > 0 {
		header["x5c"] = x5c
	}
	encoded, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("encoding the grant header: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(encoded), nil
}

// KeyID is the kid the grants carry, "" when they carry only x5c.
func (b *GrantBuilder) KeyID() string { return b.keyID }

// SendsCertificate says whether the grants carry the enterprise
// certificate (x5c), alone or beside a kid.
func (b *GrantBuilder) SendsCertificate() bool { return b.sendsX5C }

// GrantRequest is what a grant asks Maskinporten for.
type GrantRequest struct {
	// Issuer is Maskinporten's issuer identifier: the grant's aud.
	Issuer string
	// ClientID is the integration's id: the grant's iss.
	ClientID string
	// Scopes are the scopes asked for; Digdir recommends one per token.
	Scopes []string
	// Resource, when set, asks for an audience-restricted token.
	Resource string
	// ConsumerOrg, when set, asks as a supplier on behalf of this
	// organisation (delegation).
	ConsumerOrg string
	// SystemUser, when set, asks for an Altinn system user's token: the
	// grant's authorization_details. Not together with ConsumerOrg.
	SystemUser *SystemUser
}

// SystemUser is an Altinn system user, named by its customer.
type SystemUser struct {
	// Org is the customer's organisation number, nine digits.
	Org string
	// ExternalRef, when set, is the external reference the customer's
	// system user was created with; empty sends none.
	ExternalRef string
}

// Validate says which field is wrong and why.
func (r GrantRequest) Validate() error {
	if !strings.HasSuffix(r.Issuer, "/") || checkURL(r.Issuer) != nil {
		return fmt.Errorf("issuer %q: it must be Maskinporten's issuer URL, trailing slash included", r.Issuer)
	}
	if strings.TrimSpace(r.ClientID) == "" {
		return errors.New("client id is empty")
	}
	if len(r.Scopes) == 0 {
		return errors.New("no scope asked for")
	}
	for _, s := range r.Scopes {
		if err := syntax.CheckScope(s); err != nil {
			return err
		}
	}
	if r.Resource != "" {
		if u, err := url.Parse(r.Resource); err != nil || !u.IsAbs() || u.Host == "" {
			return fmt.Errorf("resource %q: it must be an absolute URL", r.Resource)
		}
	}
	if r.ConsumerOrg != "" {
		if _, err := orgno.Parse(r.ConsumerOrg); err != nil {
			return fmt.Errorf("consumer_org: %w", err)
		}
	}
	if su := r.SystemUser; su != nil {
		if r.ConsumerOrg != "" {
			return errors.New("system user: a grant carries consumer_org or a system user, not both")
		}
		if _, err := orgno.Parse(su.Org); err != nil {
			return fmt.Errorf("system user org: %w", err)
		}
		if su.ExternalRef != "" {
			if err := syntax.CheckExternalRef(su.ExternalRef); err != nil {
				return fmt.Errorf("system user external reference: %w", err)
			}
		}
	}
	return nil
}

// Grant is a signed JWT grant. The assertion is a bearer credential for
// as long as it lives, so it is kept as a secret.
type Grant struct {
	Assertion secret.Value
	// JTI identifies the grant (and so the signature) in the audit.
	JTI       string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// grantClaims are exactly the claims Maskinporten documents; anything else
// makes it answer "Invalid assertion".
type grantClaims struct {
	Audience    string `json:"aud"`
	Issuer      string `json:"iss"`
	Scope       string `json:"scope"`
	Resource    string `json:"resource,omitempty"`
	IssuedAt    int64  `json:"iat"`
	ExpiresAt   int64  `json:"exp"`
	ID          string `json:"jti"`
	ConsumerOrg string `json:"consumer_org,omitempty"`
	// AuthorizationDetails holds the one system user asked for, if any.
	AuthorizationDetails []systemUserDetail `json:"authorization_details,omitempty"`
}

// systemUserDetail is an authorization_details entry (RFC 9396) for an
// Altinn system user, its fields in Altinn's order and spelling (they are
// case-sensitive).
type systemUserDetail struct {
	Type          string `json:"type"`
	SystemUserOrg orgID  `json:"systemuser_org"`
	ExternalRef   string `json:"externalRef,omitempty"`
}

// orgID names an organisation as Maskinporten does: ISO 6523 with 0192,
// the Norwegian organisation number register.
type orgID struct {
	Authority string `json:"authority"`
	ID        string `json:"ID"`
}

// systemUserType is the authorization_details type of a system user.
const systemUserType = "urn:altinn:systemuser"

// Build makes and signs a grant with a fresh jti. Every attempt, retries
// included, needs its own: Maskinporten refuses a grant used before.
func (b *GrantBuilder) Build(req GrantRequest) (Grant, error) {
	if err := req.Validate(); err != nil {
		return Grant{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return Grant{}, fmt.Errorf("making a jti: %w", err)
	}
	now := b.now().Truncate(time.Second)
	claims := grantClaims{
		Audience:    req.Issuer,
		Issuer:      req.ClientID,
		Scope:       strings.Join(req.Scopes, " "),
		Resource:    req.Resource,
		IssuedAt:    now.Unix(),
		ExpiresAt:   now.Add(b.lifetime).Unix(),
		ID:          id.String(),
		ConsumerOrg: req.ConsumerOrg,
	}
	if su := req.SystemUser; su != nil {
		claims.AuthorizationDetails = []systemUserDetail{{
			Type:          systemUserType,
			SystemUserOrg: orgID{Authority: "iso6523-actorid-upis", ID: "0192:" + su.Org},
			ExternalRef:   su.ExternalRef,
		}}
	}
	assertion, err := b.sign(claims)
	if err != nil {
		return Grant{}, err
	}
	return Grant{Assertion: assertion, JTI: claims.ID, IssuedAt: now, ExpiresAt: now.Add(b.lifetime)}, nil
}

// sign encodes and signs any claims under the builder's header, as
// golang-jwt's SignedString does (the compact JWS of RFC 7515 §7.1), with
// the header encoded once rather than on every grant.
func (b *GrantBuilder) sign(claims any) (secret.Value, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return secret.Value{}, fmt.Errorf("encoding the grant's claims: %w", err)
	}
	enc := base64.RawURLEncoding
	var jws strings.Builder
	jws.Grow(len(b.header) + 1 + enc.EncodedLen(len(payload)) + 1 + enc.EncodedLen(512))
	jws.WriteString(b.header)
	jws.WriteByte('.')
	jws.WriteString(enc.EncodeToString(payload))
	sig, err := b.method.Sign(jws.String(), b.signer)
	if err != nil {
		return secret.Value{}, fmt.Errorf("signing the grant: %w", err)
	}
	jws.WriteByte('.')
	jws.WriteString(enc.EncodeToString(sig))
	return secret.New(jws.String())
}

// The jwt.Claims interface, which golang-jwt needs to encode the claims.
func (c grantClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.ExpiresAt, 0)), nil
}
func (c grantClaims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}
func (c grantClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }
func (c grantClaims) GetIssuer() (string, error)              { return c.Issuer, nil }
func (c grantClaims) GetSubject() (string, error)             { return "", nil }
func (c grantClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}
