package mpsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/selfservice"
)

// Values of access-token claims, as Maskinporten sets them.
const (
	// AMRCertificate is client_amr for a grant authenticated by x5c.
	AMRCertificate = "virksomhetssertifikat"
	// AMRPrivateKeyJWT is client_amr for a grant with a registered kid.
	AMRPrivateKeyJWT = "private_key_jwt"
	// DelegationSource is the delegation_source of a delegated token.
	DelegationSource = "https://www.altinn.no"
	// orgAuthority is the ISO 6523 authority of consumer and supplier ids;
	// 0192 is the ICD of Norwegian organisation numbers.
	orgAuthority = "iso6523-actorid-upis"
	orgICD       = "0192:"
)

// TokenResponse is the JSON of a successful token response.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// OrgID is the shape of the consumer and supplier claims of an access token.
type OrgID struct {
	Authority string `json:"authority"`
	ID        string `json:"ID"`
}

func orgID(n orgno.Number) OrgID { return OrgID{Authority: orgAuthority, ID: orgICD + n.String()} }

// issue signs an access token for g and answers with it.
func (s *Server) issue(w http.ResponseWriter, g *grant, now time.Time) {
	lifetime := int64(s.cfg.TokenLifetime / time.Second)
	iat := now.Unix()
	claims := jwt.MapClaims{
		"iss":        s.cfg.Issuer,
		"client_id":  g.client.ID,
		"scope":      g.scope,
		"token_type": "Bearer",
		"iat":        iat,
		"exp":        iat + lifetime,
		"jti":        uuid.NewString(),
		"client_amr": AMRPrivateKeyJWT,
		"consumer":   orgID(g.consumer),
	}
	if g.certAuth {
		claims["client_amr"] = AMRCertificate
	}
	if g.delegated {
		claims["supplier"] = orgID(g.client.OrgNumber)
		claims["delegation_source"] = DelegationSource
	}
	if g.resource != "" {
		claims["aud"] = g.resource
	}
	if u := g.issuedFor; u != nil {
		// systemuser_org as the grant asked for it (with "ID", though
		// Altinn's token example writes "id").
		claims["authorization_details"] = []systemUserClaim{{
			Type:          SystemUserType,
			SystemUserOrg: orgID(u.Customer),
			SystemUserID:  []string{u.ID},
			SystemID:      u.SystemID,
		}}
	}
	tok := jwt.NewWithClaims(s.method, claims)
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.key)
	if err != nil {
		// Signing with an in-memory RSA key does not fail; if it does,
		// the client should treat it like any server error.
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "server_error", ErrorDescription: "signing the access token failed"})
		return
	}
	s.countIssued()
	writeJSON(w, http.StatusOK, TokenResponse{
		AccessToken: signed,
		TokenType:   "Bearer",
		ExpiresIn:   lifetime,
		Scope:       g.scope,
	})
}

// Metadata is the authorization server metadata (RFC 8414) the simulator
// publishes, the subset of Maskinporten's that clients use.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, Metadata{
		Issuer:                            s.cfg.Issuer,
		TokenEndpoint:                     s.BaseURL() + "token",
		JWKSURI:                           s.BaseURL() + "jwk",
		TokenEndpointAuthMethodsSupported: []string{"private_key_jwt"},
		GrantTypesSupported:               []string{GrantType},
		TokenEndpointAuthSigningAlgs:      supportedAlgs,
	})
}

// JWK is one RSA key of the /jwk key set.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// RSA's members.
	N string `json:"n,omitempty"`
	E string `json:"e,omitempty"`
	// EC's members, for an ES256 SigningKey.
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	// X5C pins a registered key to its enterprise certificate.
	X5C []string `json:"x5c,omitempty"`
	// Exp is when a registered key stops being accepted, in Unix
	// seconds, as the self-service API tells it.
	Exp int64 `json:"exp,omitempty"`
}

// JWKS is the /jwk document.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	key := publicJWK(s.key.Public())
	key.Kid, key.Use, key.Alg = s.kid, "sig", s.method.Alg()
	writeJSON(w, http.StatusOK, JWKS{Keys: []JWK{key}})
}

// allowRead answers anything but GET and HEAD with 405 and reports whether
// the request may proceed.
func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{
		Error:            "invalid_request",
		ErrorDescription: tracedDescription("Method "+r.Method+" is not allowed; use GET", infoFrom(r.Context()).trace),
	})
	return false
}

// rsaParams returns n and e base64url-encoded without padding (RFC 7518
// section 6.3.1).
func rsaParams(pub *rsa.PublicKey) (n, e string) {
	enc := base64.RawURLEncoding
	return enc.EncodeToString(pub.N.Bytes()), enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
}

// thumbprint is the RFC 7638 JWK thumbprint of pub, used as its kid: stable
// for a given key, so a configured SigningKey keeps its kid across
// restarts. pub is a SigningKey's (validateSigningKey), which has one.
func thumbprint(pub crypto.PublicKey) string {
	kid, _ := selfservice.Thumbprint(pub)
	return kid
}

// publicJWK is pub's key members (RFC 7518 section 6): pub is a
// SigningKey's, checked by validateSigningKey.
func publicJWK(pub crypto.PublicKey) JWK {
	if ec, ok := pub.(*ecdsa.PublicKey); ok {
		raw, _ := ec.Bytes() // 0x04 || X || Y, each 32 bytes on P-256
		enc := base64.RawURLEncoding
		return JWK{Kty: "EC", Crv: "P-256", X: enc.EncodeToString(raw[1:33]), Y: enc.EncodeToString(raw[33:])}
	}
	n, e := rsaParams(pub.(*rsa.PublicKey))
	return JWK{Kty: "RSA", N: n, E: e}
}

// signingMethod is the JWS algorithm of a SigningKey.
func signingMethod(key crypto.Signer) jwt.SigningMethod {
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		return jwt.SigningMethodES256
	}
	return jwt.SigningMethodRS256
}

// validateSigningKey accepts nil (New makes an RSA key), an RSA key of at
// least 2048 bits, or an ECDSA key on P-256.
func validateSigningKey(key crypto.Signer) error {
	switch k := key.(type) {
	case nil:
		return nil
	case *rsa.PrivateKey:
		if k == nil {
			return errors.New("signing key: a nil *rsa.PrivateKey; leave SigningKey nil for a generated key")
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("signing key: RSA of %d bits; give at least 2048, as Maskinporten's", k.N.BitLen())
		}
		return nil
	case *ecdsa.PrivateKey:
		if k == nil {
			return errors.New("signing key: a nil *ecdsa.PrivateKey; leave SigningKey nil for a generated key")
		}
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("signing key: ECDSA on %s; ES256 needs P-256", k.Curve.Params().Name)
		}
		return nil
	default:
		return fmt.Errorf("signing key: a %T; give an *rsa.PrivateKey (RS256) or a P-256 *ecdsa.PrivateKey (ES256)", key)
	}
}
