package maskinporten

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"
)

// FuzzParseTokenResponse: whatever arrives, the parser never panics, and
// what it accepts is a token a caller can use.
func FuzzParseTokenResponse(f *testing.F) {
	f.Add([]byte(`{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":599,"scope":"svv:kjoretoy/ecoc"}`))
	f.Add([]byte(`{"access_token":"x","token_type":"bearer","expires_in":1e2}`))
	f.Add([]byte(`{"access_token":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseTokenResponse(body)
		if err != nil {
			return
		}
		if got.AccessToken == "" || strings.ContainsAny(got.AccessToken, " \t\r\n") {
			t.Fatalf("accepted access token %q", got.AccessToken)
		}
		if got.ExpiresIn <= 0 || got.ExpiresIn > maxExpiresIn || got.ExpiresIn%time.Second != 0 {
			t.Fatalf("accepted expires_in %v", got.ExpiresIn)
		}
		if got.TokenType != "Bearer" {
			t.Fatalf("accepted token type %q", got.TokenType)
		}
	})
}

// FuzzParseError: a refusal is always described, bounded, printable and
// on one line, so it can go into an error and a log safely.
func FuzzParseError(f *testing.F) {
	f.Add(400, "", []byte(`{"error":"invalid_grant","error_description":"Invalid assertion (MP-110) [trace_id: 4bf92f3577b34da6]"}`))
	f.Add(429, "2", []byte(`{"error":"too_many_requests"}`))
	f.Add(502, "", []byte("<html>Bad gateway</html>"))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		e := ParseError(status, http.Header{"Retry-After": {retryAfter}}, body)
		if e == nil || e.Status != status {
			t.Fatalf("ParseError = %+v", e)
		}
		for _, s := range []string{e.Code, e.Description, e.URI, e.MPCode, e.TraceID} {
			if len(s) > maxDescription+64 {
				t.Fatalf("field of %d bytes", len(s))
			}
			for _, r := range s {
				if !unicode.IsPrint(r) {
					t.Fatalf("unprintable %q in %q", r, s)
				}
			}
		}
		if e.MPCode != "" && !mpCodePattern.MatchString(e.MPCode) {
			t.Fatalf("MP code %q", e.MPCode)
		}
		if e.RetryAfter < 0 {
			t.Fatalf("negative Retry-After %v", e.RetryAfter)
		}
		_ = e.Error()
	})
}
