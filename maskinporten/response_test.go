package maskinporten

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseTokenResponse(t *testing.T) {
	tests := []struct {
		name string
		body string
		want time.Duration
		err  string
	}{
		{"maskinporten's shape", `{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":599,"scope":"svv:kjoretoy/ecoc"}`, 599 * time.Second, ""},
		{"lowercase bearer", `{"access_token":"x","token_type":"bearer","expires_in":120}`, 120 * time.Second, ""},
		{"unknown fields ignored", `{"access_token":"x","token_type":"Bearer","expires_in":7199,"refresh":1}`, 7199 * time.Second, ""},
		{"no token", `{"token_type":"Bearer","expires_in":120}`, 0, "no access_token"},
		{"empty token", `{"access_token":"","token_type":"Bearer","expires_in":120}`, 0, "no access_token"},
		{"no type", `{"access_token":"x","expires_in":120}`, 0, "token_type is missing"},
		{"mac type", `{"access_token":"x","token_type":"MAC","expires_in":120}`, 0, `token_type is "MAC"`},
		{"no expiry", `{"access_token":"x","token_type":"Bearer"}`, 0, "no expires_in"},
		{"zero expiry", `{"access_token":"x","token_type":"Bearer","expires_in":0}`, 0, "expires_in"},
		{"fractional expiry", `{"access_token":"x","token_type":"Bearer","expires_in":1.5}`, 0, "expires_in"},
		{"quoted expiry", `{"access_token":"x","token_type":"Bearer","expires_in":"120"}`, 120 * time.Second, ""},
		{"a year", `{"access_token":"x","token_type":"Bearer","expires_in":31536000}`, 0, "between 1 and 86400"},
		{"space in token", `{"access_token":"a b","token_type":"Bearer","expires_in":120}`, 0, "white space"},
		{"html", `<html>502</html>`, 0, "not a JSON object"},
		{"array", `[]`, 0, "not a JSON object"},
		{"null", `null`, 0, "no access_token"},
		{"two objects", `{"access_token":"x","token_type":"Bearer","expires_in":1}{}`, 0, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokenResponse([]byte(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrBadResponse) {
					t.Fatalf("error = %v, want ErrBadResponse saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ExpiresIn != tt.want || got.TokenType != "Bearer" || got.AccessToken == "" {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		name                   string
		status                 int
		header                 http.Header
		body                   string
		code, mp, trace, descr string
		retryable              bool
		retryAfter             time.Duration
	}{
		{
			name: "simulator format", status: 400,
			body: `{"error":"invalid_grant","error_description":"Invalid assertion. Client authentication failed. Invalid JWT claim aud (MP-110) [trace_id: 4bf92f3577b34da6]"}`,
			code: "invalid_grant", mp: "MP-110", trace: "4bf92f3577b34da6", descr: "Invalid JWT claim aud",
		},
		{
			name: "trace id in a header", status: 400, header: http.Header{"X-Trace-Id": {"abc123def456"}},
			body: `{"error":"invalid_scope","error_description":"Scope not granted (MP-200)"}`,
			code: "invalid_scope", mp: "MP-200", trace: "abc123def456",
		},
		{
			name: "rate limited", status: 429, header: http.Header{"Retry-After": {"3"}},
			body: `{"error":"too_many_requests"}`, code: "too_many_requests", retryable: true, retryAfter: 3 * time.Second,
		},
		{
			name: "proxy page", status: 502, body: "<html>\n<body>Bad gateway</body>\n</html>",
			descr: "unexpected response body: <html> <body>Bad gateway</body> </html>", retryable: true,
		},
		{
			name: "control characters", status: 400, body: `{"error":"invalid_request","error_description":"bad\u0000\u001b[31m value"}`,
			code: "invalid_request", descr: "bad[31m value",
		},
		{name: "empty 503", status: 503, retryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if header == nil {
				header = http.Header{}
			}
			e := ParseError(tt.status, header, []byte(tt.body))
			if e.Status != tt.status || e.Code != tt.code || e.MPCode != tt.mp || e.TraceID != tt.trace {
				t.Fatalf("got %+v", e)
			}
			if tt.descr != "" && !strings.Contains(e.Description, tt.descr) {
				t.Errorf("description %q lacks %q", e.Description, tt.descr)
			}
			if e.Retryable() != tt.retryable || e.RetryAfter != tt.retryAfter {
				t.Errorf("retryable %v after %v, want %v after %v", e.Retryable(), e.RetryAfter, tt.retryable, tt.retryAfter)
			}
			if msg := e.Error(); !strings.Contains(msg, "HTTP") || (tt.mp != "" && !strings.Contains(msg, tt.mp)) {
				t.Errorf("Error() = %q", msg)
			}
		})
	}
}

func TestParseErrorBoundsItsDescription(t *testing.T) {
	e := ParseError(500, http.Header{}, []byte(strings.Repeat("å", 10000)))
	if len(e.Description) > maxDescription+64 {
		t.Fatalf("description is %d bytes", len(e.Description))
	}
	if !strings.HasSuffix(e.Description, "…") || strings.ContainsRune(e.Description, '\uFFFD') {
		t.Fatalf("description cut badly: %q", e.Description[len(e.Description)-10:])
	}
}

func TestParseMetadata(t *testing.T) {
	good := `{"issuer":"https://test.maskinporten.no/","token_endpoint":"https://test.maskinporten.no/token","jwks_uri":"https://test.maskinporten.no/jwk"}`
	meta, err := ParseMetadata([]byte(good), "https://test.maskinporten.no/")
	if err != nil || meta.TokenEndpoint != "https://test.maskinporten.no/token" {
		t.Fatalf("ParseMetadata = %+v, %v", meta, err)
	}
	for name, body := range map[string]string{
		"other issuer":  strings.Replace(good, `"issuer":"https://test.`, `"issuer":"https://evil.`, 1),
		"http endpoint": strings.Replace(good, `"token_endpoint":"https:`, `"token_endpoint":"http:`, 1),
		"not json":      "<html>",
	} {
		if _, err := ParseMetadata([]byte(body), "https://test.maskinporten.no/"); !errors.Is(err, ErrBadResponse) {
			t.Errorf("%s: error = %v, want ErrBadResponse", name, err)
		}
	}
}
