package mpsim

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portvakt/portvakt/orgno"
)

// supportedAlgs are the grant signature algorithms Digdir accepts today.
var supportedAlgs = []string{"RS256", "RS384", "RS512"}

// assertion is a grant as read before any check: header and claims
// decoded, nothing verified.
type assertion struct {
	raw    string
	header map[string]any
	claims jwt.MapClaims
	// malformed is why raw is not a JWS at all, or nil.
	malformed error
}

// grant is an assertion that has passed authentication (checks 3 to 10).
type grant struct {
	client      *registeredClient
	certAuth    bool // x5c rather than kid
	scope       string
	scopes      []string
	resource    string
	consumerOrg *string // the raw claim, nil when absent
	systemUser  *systemUserRequest
	jti         string
	exp         time.Time

	// Set by authorize: whose token it is, and whether by delegation.
	consumer  orgno.Number
	delegated bool
	// issuedFor is the system user the token is for, when asked for.
	issuedFor *SystemUser
}

// decode reads raw without verifying anything, so the jti can be recorded
// even for requests that will fail or be faulted.
func (s *Server) decode(raw string) *assertion {
	a := &assertion{raw: raw, claims: jwt.MapClaims{}}
	tok, _, err := s.parser.ParseUnverified(raw, a.claims)
	if tok != nil {
		a.header = tok.Header
	}
	// ErrTokenUnverifiable only means alg is missing or unknown to the
	// library, found after header and claims were decoded; check 3
	// reports that with its own message.
	if err != nil && !errors.Is(err, jwt.ErrTokenUnverifiable) {
		a.malformed = err
	}
	return a
}

// authenticate applies checks 3 to 10 in Maskinporten's order and returns
// the first refusal.
func (s *Server) authenticate(a *assertion, now time.Time) (*grant, *refusal) {
	if a.malformed != nil {
		return nil, invalidGrant(CodeInvalidRequest, "Not a compact JWS: it must be three base64url parts without padding, with a JSON header and JSON claims")
	}

	// 3. Header.
	alg, _ := a.header["alg"].(string)
	if !slices.Contains(supportedAlgs, alg) {
		return nil, invalidGrant(CodeInvalidRequest, "Unsupported alg %q; use RS256, RS384 or RS512", alg)
	}
	if _, ok := a.header["crit"]; ok {
		return nil, invalidGrant(CodeInvalidRequest, "Unsupported header parameter crit")
	}
	x5c, hasX5C := a.header["x5c"]
	kid, hasKID := a.header["kid"]
	if !hasX5C && !hasKID {
		return nil, invalidGrant(CodeInvalidRequest, "The header must carry x5c or kid (or both: x5c beside a kid pins the registered key to its certificate)")
	}

	// 4. Who signed it.
	var (
		key  crypto.PublicKey
		leaf *x509.Certificate
		ref  *refusal
	)
	if hasX5C {
		if leaf, ref = s.checkX5C(x5c, now); ref != nil {
			return nil, ref
		}
		key = leaf.PublicKey
	}
	if hasKID {
		registered, ref := s.checkKID(kid, a.claims, now)
		if ref != nil {
			return nil, ref
		}
		// With x5c as well, the certificate must be the registered key's:
		// the grant is checked against both.
		if leaf != nil && !registered.(*rsa.PublicKey).Equal(leaf.PublicKey) {
			return nil, authFailed(CodeInvalidX5C, "Invalid x5c: x5c[0] certifies another key than the registered key %q", kid)
		}
		key = registered
	}

	// 5. Signature, with the alg the header declares.
	if _, err := s.parser.Parse(a.raw, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		return nil, authFailed(CodeInvalidSignature, "Invalid signature")
	}

	// 6 to 8. Claims.
	c, ref := readClaims(a.claims)
	if ref != nil {
		return nil, ref
	}
	if c.aud != s.cfg.Issuer {
		return nil, authFailed(CodeInvalidAudience, "Invalid JWT claim aud: %q is not the issuer %q", c.aud, s.cfg.Issuer)
	}
	if ref := s.checkTimes(c.iat, c.exp, now); ref != nil {
		return nil, ref
	}

	// 9. The client.
	client := s.clients[c.iss]
	if client == nil {
		return nil, authFailed(CodeClientNotFound, "Client not found")
	}

	// 10. The certificate belongs to the client's organisation.
	if leaf != nil {
		n, err := orgno.FromCertificate(leaf)
		if err != nil {
			return nil, authFailed(CodeOrgMismatch, "The certificate carries no valid organisation number")
		}
		if n != client.OrgNumber {
			return nil, authFailed(CodeOrgMismatch, "The certificate's organisation number %s is not that of client %q", n, client.ID)
		}
	}

	return &grant{
		client:      client,
		certAuth:    leaf != nil,
		scope:       c.scope,
		scopes:      c.scopes,
		resource:    c.resource,
		consumerOrg: c.consumerOrg,
		systemUser:  c.systemUser,
		jti:         c.jti,
		exp:         time.Unix(0, int64(c.exp*1e9)),
	}, nil
}

// checkX5C applies check 4 to an x5c header: standard base64 DER
// certificates, leaf first, each signed by the next, chaining to a trust
// root and all valid now. It returns the leaf.
func (s *Server) checkX5C(v any, now time.Time) (*x509.Certificate, *refusal) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, authFailed(CodeInvalidX5C, "Invalid x5c: it must be a non-empty array of base64 DER certificates, leaf first")
	}
	strs := make([]string, len(list))
	for i, e := range list {
		str, ok := e.(string)
		if !ok {
			return nil, authFailed(CodeInvalidX5C, "Invalid x5c: x5c[%d] is not a string", i)
		}
		strs[i] = str
	}
	id := chainID(strs)
	if leaf, ok := s.chains.valid(id, now); ok {
		return leaf, nil
	}
	certs := make([]*x509.Certificate, len(list))
	for i, str := range strs {
		der, err := base64.StdEncoding.Strict().DecodeString(str)
		if err != nil {
			if _, uerr := base64.RawURLEncoding.DecodeString(str); uerr == nil {
				return nil, authFailed(CodeInvalidX5C, "Invalid x5c: x5c[%d] is base64url or unpadded; RFC 7517 section 4.7 requires standard base64", i)
			}
			return nil, authFailed(CodeInvalidX5C, "Invalid x5c: x5c[%d] is not standard base64", i)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, authFailed(CodeInvalidX5C, "Invalid x5c: x5c[%d] is not a DER X.509 certificate", i)
		}
	}
	for i := 0; i+1 < len(certs); i++ {
		if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
			return nil, authFailed(CodeInvalidX5C, "Invalid x5c: x5c[%d] is not signed by x5c[%d]; send the chain in order, leaf first", i, i+1)
		}
	}

	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         s.roots,
		Intermediates: intermediates,
		// eSeals carry clientAuth, not the default serverAuth.
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime: now,
	}
	chains, verr := certs[0].Verify(opts)
	if verr != nil {
		// Verify does not say cleanly whether a chain failed on trust or
		// on time. Trust is the more basic problem, so it is told first:
		// a chain that does not verify even at a moment when every x5c
		// certificate was valid is untrusted.
		opts.CurrentTime = latestNotBefore(certs)
		if _, err := certs[0].Verify(opts); err != nil {
			return nil, authFailed(CodeUntrustedCert, "Signed with an invalid certificate: the x5c chain does not lead to a certificate authority trusted here; a production certificate used in test, or a missing intermediate")
		}
	}
	// Verify builds the shortest chain it can, so a certificate late in
	// x5c may not have been looked at; every one must be valid now.
	for i, c := range certs {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, expired(i, c, now)
		}
	}
	if verr != nil {
		// Trusted, every x5c certificate valid now, yet no chain now:
		// only the trust root can be out of its validity.
		return nil, authFailed(CodeExpiredKey, "Expired key: the trust root the chain leads to is not valid at %s", now.UTC().Format(time.RFC3339))
	}
	s.chains.add(id, certs, chains[0][len(chains[0])-1])
	return certs[0], nil
}

// expired is the MP-121 refusal for x5c[i] not being valid at now.
func expired(i int, c *x509.Certificate, now time.Time) *refusal {
	state := "has expired"
	if now.Before(c.NotBefore) {
		state = "is not yet valid"
	}
	return authFailed(CodeExpiredKey, "Expired key: certificate x5c[%d] %s; it is valid from %s to %s, and the time here is %s",
		i, state, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
}

func latestNotBefore(certs []*x509.Certificate) time.Time {
	t := certs[0].NotBefore
	for _, c := range certs[1:] {
		if c.NotBefore.After(t) {
			t = c.NotBefore
		}
	}
	return t
}

// checkKID applies check 4 to a kid header: the kid must be registered on
// the client the unverified iss names.
func (s *Server) checkKID(v any, claims jwt.MapClaims, now time.Time) (crypto.PublicKey, *refusal) {
	kid, ok := v.(string)
	if !ok || kid == "" {
		return nil, invalidGrant(CodeInvalidRequest, "Header kid must be a non-empty string")
	}
	iss, _ := claims["iss"].(string)
	client := s.clients[iss]
	if client == nil {
		return nil, authFailed(CodeClientNotFound, "Client not found")
	}
	key, _, expired, ok := s.registry.lookup(iss, kid, now)
	if expired != nil {
		return nil, authFailed(CodeExpiredKey, "Expired key: kid %q expired at %s; register a new key", kid, expired.expires.UTC().Format(time.RFC3339))
	}
	if !ok {
		return nil, authFailed(CodeClientNotFound, "kid %q is not registered for client %q", kid, iss)
	}
	return key, nil
}
