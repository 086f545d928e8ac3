package mpsim

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// GrantType is the only grant type Maskinporten accepts (RFC 7523).
const GrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// maxBodyBytes bounds a token request body. A grant with a three-certificate
// x5c chain is a few KiB; 64 KiB leaves ample room while keeping a
// misbehaving client from making the simulator buffer without limit.
const maxBodyBytes = 64 << 10

// serveToken is the token endpoint: it reads the request, records the jti,
// injects faults, checks the grant in Maskinporten's order and issues an
// access token or answers with the first refusal.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	info := infoFrom(r.Context())
	// RFC 6749 section 5.1: token responses, errors included, must not
	// be cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	s.countRequest()

	raw, ref := readTokenRequest(r)
	if ref != nil {
		s.writeRefusal(w, info, ref)
		return
	}

	a := s.decode(raw)
	info.jti, _ = a.claims["jti"].(string)
	info.clientID, _ = a.claims["iss"].(string)
	s.recordJTI(info.jti, resourceOf(a.claims["resource"]))

	if s.applyFaults(w, r, info) {
		return
	}

	now := s.now()
	g, ref := s.authenticate(a, now)
	if ref == nil {
		ref = s.authorize(g, now)
	}
	if ref != nil {
		s.writeRefusal(w, info, ref)
		return
	}
	s.issue(w, g, now)
}

// readTokenRequest applies check 1: a POST with a form body of at most
// maxBodyBytes carrying exactly one grant_type (the JWT bearer one) and
// exactly one non-empty assertion. It returns the assertion.
func readTokenRequest(r *http.Request) (string, *refusal) {
	if r.Method != http.MethodPost {
		ref := badRequest("method %s is not allowed; use POST", r.Method)
		ref.status = http.StatusMethodNotAllowed
		return "", ref
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/x-www-form-urlencoded" {
		return "", badRequest("Content-Type is %q; it must be application/x-www-form-urlencoded", ct)
	}
	// Parameters in the URL would end up in access logs, assertion
	// included; Maskinporten reads only the body.
	if r.URL.RawQuery != "" {
		return "", badRequest("parameters must be sent in the form body, not in the URL query")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return "", badRequest("reading the body failed")
	}
	if len(body) > maxBodyBytes {
		return "", badRequest("body is larger than %d bytes", maxBodyBytes)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", badRequest("body is not valid application/x-www-form-urlencoded data")
	}
	for name, values := range form {
		// RFC 6749 section 3.2: parameters must not be repeated.
		if len(values) > 1 {
			return "", badRequest("parameter %s is given %d times; give it once", name, len(values))
		}
	}
	switch gt := form.Get("grant_type"); {
	case !form.Has("grant_type"):
		return "", badRequest("grant_type is missing; it must be %s", GrantType)
	case gt != GrantType:
		return "", badRequest("grant_type %q is not supported; it must be %s", gt, GrantType)
	}
	assertion := form.Get("assertion")
	if assertion == "" {
		return "", badRequest("assertion is missing or empty")
	}
	return assertion, nil
}

// resourceOf is how Stats.Resources names a resource claim: a string as
// it is, an array's strings joined by spaces, anything else "".
func resourceOf(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		parts := make([]string, 0, len(v))
		for _, p := range v {
			s, ok := p.(string)
			if !ok {
				return ""
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " ")
	}
	return ""
}
