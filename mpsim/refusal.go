package mpsim

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// MP codes the simulator answers with, as Maskinporten documents them.
const (
	CodeInvalidRequest     = "MP-011" // invalid request or assertion format
	CodeGrantReused        = "MP-012" // jti used before
	CodeClientNotFound     = "MP-100" // unknown iss, or unknown kid
	CodeInvalidAudience    = "MP-110" // aud is not the issuer
	CodeUntrustedCert      = "MP-120" // x5c chain not trusted here
	CodeExpiredKey         = "MP-121" // certificate expired or not yet valid
	CodeOrgMismatch        = "MP-122" // certificate's org number is not the client's
	CodeInvalidX5C         = "MP-123" // x5c unreadable or inconsistent
	CodeInvalidSignature   = "MP-124" // signature does not verify
	CodeInvalidTime        = "MP-130" // iat/exp out of bounds
	CodeScopeNotGranted    = "MP-200" // scope not registered for the client
	CodeConsumerNotGranted = "MP-250" // the consumer has not itself been granted the scope
	CodeNotDelegated       = "MP-251" // consumer has not delegated the scope to this supplier
	CodeAuthzUnknownType   = "MP-301" // authorization_details of an unknown (or no) type
	CodeAuthzUnknownField  = "MP-302" // authorization_details with unknown fields
	CodeAuthzInvalidValue  = "MP-303" // authorization_details values invalid, or no system user matches
)

// DescriptionFormat is the format of every refusal's error_description:
// the message, the MP code and the request's trace id, e.g.
//
//	Invalid assertion. Grant is used before (MP-012) [trace_id: 5f0c2a9e41d7b38c]
//
// Take the code and trace id from the end of the string, for example with
// the regular expression ` \((MP-\d{3})\) \[trace_id: ([0-9a-f]{16})\]$`; the
// message may contain anything. Injected faults (503, 429) have no MP code
// and end with the trace id only.
const DescriptionFormat = "%s (%s) [trace_id: %s]"

// refusal is a token request the simulator turns down: an HTTP status, an
// OAuth error code, an MP code and a human-readable message.
type refusal struct {
	status int
	oauth  string
	mp     string
	msg    string
}

func (r *refusal) Error() string { return fmt.Sprintf("%s: %s (%s)", r.oauth, r.msg, r.mp) }

// badRequest is a 400 invalid_request MP-011 about the HTTP request itself.
func badRequest(format string, args ...any) *refusal {
	return &refusal{http.StatusBadRequest, "invalid_request", CodeInvalidRequest, "Invalid request: " + fmt.Sprintf(format, args...)}
}

// badAssertion is a 400 invalid_request MP-011 about the assertion's
// claims (unknown, missing or mistyped).
func badAssertion(format string, args ...any) *refusal {
	return &refusal{http.StatusBadRequest, "invalid_request", CodeInvalidRequest, "Invalid assertion. " + fmt.Sprintf(format, args...)}
}

// invalidGrant is a 400 invalid_grant refusal with the given MP code.
func invalidGrant(mp, format string, args ...any) *refusal {
	return &refusal{http.StatusBadRequest, "invalid_grant", mp, "Invalid assertion. " + fmt.Sprintf(format, args...)}
}

// authFailed is an invalid_grant refusal worded as Maskinporten words
// failed client authentication.
func authFailed(mp, format string, args ...any) *refusal {
	return invalidGrant(mp, "Client authentication failed. "+format, args...)
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// writeRefusal answers with ref and records it.
func (s *Server) writeRefusal(w http.ResponseWriter, info *requestInfo, ref *refusal) {
	info.mpCode = ref.mp
	s.countRefusal(ref.mp)
	if ref.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	writeJSON(w, ref.status, errorBody{
		Error:            ref.oauth,
		ErrorDescription: fmt.Sprintf(DescriptionFormat, ref.msg, ref.mp, info.trace),
	})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the simulator's own fixed types are encoded here.
		panic("mpsim: encoding response: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
