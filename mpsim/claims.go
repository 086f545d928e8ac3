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
var allowedClaims = []string{"aud", "iss", "scope", "resource", "iat", "exp", "jti", "consumer_org"}

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
		if c.resource, ok = v.(string); !ok || c.resource == "" {
			return nil, badAssertion("Claim resource must be a non-empty string")
		}
	}
	if v, present := m["consumer_org"]; present {
		s, ok := v.(string)
		if !ok {
			return nil, badAssertion("Claim consumer_org must be a string of nine digits")
		}
		c.consumerOrg = &s
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
