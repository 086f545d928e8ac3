package mpsim

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portvakt/portvakt/orgno"
)

// Digdir's self-service API, the part of it that manages an
// integration's registered keys: GET, POST and PUT of
// api/v1/clients/{client_id}/jwks below the base URL (in Digdir's
// deployment another host, api.samarbeid.digdir.no; here the same
// listener). POST and PUT replace the whole set.
//
// A request is authorised by an access token this simulator issued, for
// the self-service scopes, to a client that authenticated with an
// enterprise certificate (x5c) and belongs to the organisation that owns
// the integration: a supplier's delegated token does not do.

// The self-service scopes.
const (
	ScopeDCRRead   = "idporten:dcr.read"
	ScopeDCRModify = "idporten:dcr.modify"
	ScopeDCRWrite  = "idporten:dcr.write"
)

// SelfServicePath is where the API is served, below the base URL.
const SelfServicePath = "api/v1/"

// maxJWKSBody bounds a posted set: five keys with certificate chains are
// a few tens of kilobytes.
const maxJWKSBody = 256 << 10

func (s *Server) serveClientJWKS(w http.ResponseWriter, r *http.Request) {
	info := infoFrom(r.Context())
	s.update(func(st *Stats) { st.SelfServiceRequests++ })
	fail := func(status int, code, format string, args ...any) {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="selvbetjening"`)
		}
		writeJSON(w, status, errorBody{Error: code, ErrorDescription: tracedDescription(fmt.Sprintf(format, args...), info.trace)})
	}
	if s.faults.Load().SelfServiceDown {
		s.countFault()
		info.fault = "self_service_down"
		fail(http.StatusServiceUnavailable, "server_error", "The self-service API is unavailable; try again later")
		return
	}
	clientID := r.PathValue("client_id")
	info.clientID = clientID
	write := r.Method == http.MethodPost || r.Method == http.MethodPut
	if !write && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST, PUT")
		fail(http.StatusMethodNotAllowed, "invalid_request", "Method %s is not allowed; use GET to read the keys, POST or PUT to replace them", r.Method)
		return
	}
	caller, status, msg := s.selfServiceCaller(r, write)
	if status != 0 {
		code := "invalid_token"
		if status == http.StatusForbidden {
			code = "insufficient_scope"
		}
		fail(status, code, "%s", msg)
		return
	}
	target := s.clients[clientID]
	switch {
	case target == nil:
		fail(http.StatusNotFound, "not_found", "No integration %q", clientID)
		return
	case target.OrgNumber != caller.OrgNumber:
		fail(http.StatusForbidden, "access_denied", "Integration %q belongs to another organisation than the token's client %q", clientID, caller.ID)
		return
	}
	if !write {
		writeJSON(w, http.StatusOK, s.registry.snapshot(clientID))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJWKSBody+1))
	if err != nil {
		fail(http.StatusBadRequest, "invalid_request", "Reading the body: %v", err)
		return
	}
	if len(body) > maxJWKSBody {
		fail(http.StatusRequestEntityTooLarge, "invalid_request", "The body is over %d bytes", maxJWKSBody)
		return
	}
	now := s.now()
	keys, err := parseKeySet(body, func(kid string, pub *rsa.PublicKey, x5c []string) (*x509.Certificate, error) {
		return s.checkPin(kid, pub, x5c, target.OrgNumber)
	})
	if err == nil {
		var doc jwksDocument
		if doc, err = s.registry.replace(clientID, keys, now, s.cfg.KeyActivationDelay, s.cfg.RegisteredKeyLifetime); err == nil {
			s.update(func(st *Stats) { st.JWKSReplaced++ })
			writeJSON(w, http.StatusOK, doc)
			return
		}
	}
	fail(http.StatusBadRequest, "invalid_request", "%v", err)
}

// selfServiceCaller checks the request's bearer token and returns its
// client, or the status and words of a refusal.
func (s *Server) selfServiceCaller(r *http.Request, write bool) (*registeredClient, int, string) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return nil, http.StatusUnauthorized, "The request needs an Authorization: Bearer header with a Maskinporten token for the self-service scopes"
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return s.key.Public(), nil },
		jwt.WithValidMethods([]string{s.method.Alg()}), jwt.WithIssuer(s.cfg.Issuer), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now))
	if err != nil {
		return nil, http.StatusUnauthorized, "The bearer token is not a valid access token of this Maskinporten: " + tokenProblem(err)
	}
	scopes := strings.Fields(fmt.Sprint(claims["scope"]))
	need := []string{ScopeDCRRead, ScopeDCRModify, ScopeDCRWrite}
	if write {
		need = need[1:]
	}
	if !slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(need, sc) }) {
		return nil, http.StatusForbidden, fmt.Sprintf("The token's scopes %q do not include %s", scopes, strings.Join(need, " or "))
	}
	if _, delegated := claims["supplier"]; delegated {
		return nil, http.StatusForbidden, "A delegated token cannot manage integrations; use the owner's own token"
	}
	if claims["client_amr"] != AMRCertificate {
		return nil, http.StatusForbidden, "The self-service API needs a token whose grant was signed with an enterprise certificate (x5c), not a registered key"
	}
	id, _ := claims["client_id"].(string)
	caller := s.clients[id]
	if caller == nil {
		return nil, http.StatusUnauthorized, fmt.Sprintf("The token's client %q is not known", id)
	}
	return caller, 0, ""
}

func tokenProblem(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "it has expired"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "its signature does not verify"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "another issuer's"
	default:
		return "it cannot be read"
	}
}

// checkPin checks a registered key's x5c: a chain to a trust root whose
// leaf holds the key itself and the integration's organisation number,
// as a grant's x5c is checked.
func (s *Server) checkPin(kid string, pub *rsa.PublicKey, x5c []string, org orgno.Number) (*x509.Certificate, error) {
	list := make([]any, len(x5c))
	for i, c := range x5c {
		list[i] = c
	}
	leaf, ref := s.checkX5C(list, s.now())
	if ref != nil {
		return nil, fmt.Errorf("kid %q: x5c: %s", kid, strings.TrimPrefix(ref.msg, "Client authentication failed. "))
	}
	if lp, ok := leaf.PublicKey.(*rsa.PublicKey); !ok || !lp.Equal(pub) {
		return nil, fmt.Errorf("kid %q: x5c[0] certifies another key than the JWK's n and e", kid)
	}
	if n, err := orgno.FromCertificate(leaf); err != nil || n != org {
		return nil, fmt.Errorf("kid %q: x5c[0] is not the certificate of the integration's organisation %s", kid, org)
	}
	return leaf, nil
}
