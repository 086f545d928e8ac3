package mpsim

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxGrantLifetime is the longest exp - iat Maskinporten accepts.
const maxGrantLifetime = 120 * time.Second

// allowedClaims are the only claims a grant may carry; Maskinporten
// answers anything else with "Invalid assertion".
var allowedClaims = []string{"aud", "iss", "scope", "resource", "iat", "exp", "jti", "consumer_org", "authorization_details"}

// requiredClaims must be present. Maskinporten only recommends jti, but a
// grant without one cannot be protected against replay, so the simulator
// insists.
var requiredClaims = []string{"aud", "iss", "scope", "iat", "exp", "jti"}

// grantClaims are a grant's claims, type-checked.
type grantClaims struct {
	aud, iss, scope, resource, jti string
	scopes                         []string
	iat, exp                       float64 // seconds since the epoch
	consumerOrg                    *string
	systemUser                     *systemUserRequest // nil without authorization_details
}

// readClaims applies check 6: no unknown claims, the required ones present,
// each of the right JSON type.
func readClaims(m jwt.MapClaims) (*grantClaims, *refusal) {
	var unknown, missing []string
	for name := range m {
		if !slices.Contains(allowedClaims, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, badAssertion("Unknown claim(s): %s", strings.Join(unknown, ", "))
	}
	for _, name := range requiredClaims {
		if _, ok := m[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, badAssertion("Missing claim(s): %s", strings.Join(missing, ", "))
	}

	var c grantClaims
	var ok bool
	if c.aud, ok = m["aud"].(string); !ok {
		// JWT allows an array here, Maskinporten does not.
		return nil, authFailed(CodeInvalidAudience, "Invalid JWT claim aud: it must be a single string, not %s", jsonType(m["aud"]))
	}
	for _, sc := range []struct {
		name string
		dst  *string
	}{{"iss", &c.iss}, {"scope", &c.scope}, {"jti", &c.jti}} {
		if *sc.dst, ok = m[sc.name].(string); !ok || *sc.dst == "" {
			return nil, badAssertion("Claim %s must be a non-empty string", sc.name)
		}
	}
	c.scopes = strings.Split(c.scope, " ")
	for _, sc := range c.scopes {
		if validateScopeName(sc) != nil {
			return nil, badAssertion("Claim scope %q must be scope names separated by single spaces", c.scope)
		}
	}
	if v, present := m["resource"]; present {
		var ref *refusal
		if c.resource, ref = readResource(v); ref != nil {
			return nil, ref
		}
	}
	if v, present := m["consumer_org"]; present {
		s, ok := v.(string)
		if !ok {
			return nil, badAssertion("Claim consumer_org must be a string of nine digits")
		}
		c.consumerOrg = &s
	}
	if v, present := m["authorization_details"]; present {
		// Different mechanisms: API delegation grants a supplier a
		// whole scope, a system user a set of Altinn rights; Digdir
		// names no code of its own for asking for both.
		if c.consumerOrg != nil {
			return nil, badAssertion("A grant may carry consumer_org (API delegation) or authorization_details (an Altinn system user), not both")
		}
		var ref *refusal
		if c.systemUser, ref = readAuthorizationDetails(v); ref != nil {
			return nil, ref
		}
	}
	for _, nc := range []struct {
		name string
		dst  *float64
	}{{"iat", &c.iat}, {"exp", &c.exp}} {
		n, ok := m[nc.name].(json.Number)
		f, err := n.Float64()
		if !ok || err != nil {
			return nil, badAssertion("Claim %s must be a number of seconds since the epoch", nc.name)
		}
		*nc.dst = f
	}
	return &c, nil
}

// readResource reads the resource claim: a non-empty string, or a JSON
// array of one. Digdir's grant page shows an array and its grant generator
// a string, so Maskinporten takes both. A token has one audience here
// (Digdir's audience-restriction page: the resource becomes the token's
// aud), so an array of more than one is refused, as an empty one is,
// rather than silently narrowed to its first element.
func readResource(v any) (string, *refusal) {
	switch v := v.(type) {
	case string:
		if v != "" {
			return v, nil
		}
	case []any:
		if len(v) > 1 {
			return "", badAssertion("Claim resource has %d values; Maskinporten issues a token for one audience, so ask for one resource per token", len(v))
		}
		if len(v) == 1 {
			if s, ok := v[0].(string); ok && s != "" {
				return s, nil
			}
		}
	}
	return "", badAssertion("Claim resource must be a non-empty string or an array of one")
}

// checkTimes applies check 8 to iat and exp at now.
func (s *Server) checkTimes(iat, exp float64, now time.Time) *refusal {
	nowS := float64(now.UnixNano()) / 1e9
	skew := s.cfg.ClockSkew.Seconds()
	switch {
	case iat > nowS+skew:
		return invalidGrant(CodeInvalidTime, "Issue time is after now: iat is %.0f s ahead of the time here; check the client's clock", iat-nowS)
	case iat < nowS-skew:
		return invalidGrant(CodeInvalidTime, "Issue time too far in the past: iat is %.0f s behind the time here; make a fresh grant for every request", nowS-iat)
	case exp-iat > maxGrantLifetime.Seconds():
		return invalidGrant(CodeInvalidTime, "JWT lifetime exceeds 120 seconds: exp - iat is %.0f s", exp-iat)
	case exp <= iat:
		return invalidGrant(CodeInvalidTime, "JWT expires before it is issued: exp must be after iat")
	case exp <= nowS:
		return invalidGrant(CodeInvalidTime, "JWT expired")
	}
	return nil
}

// jsonType names the JSON type of a decoded value, for messages.
func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a string"
	}
}
