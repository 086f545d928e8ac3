package maskinporten

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portvakt/portvakt/secret"
)

// Token is an access token from Maskinporten.
type Token struct {
	AccessToken secret.Value
	TokenType   string
	// Scope is the scope Maskinporten says it issued (for information; the
	// API decides what the token allows).
	Scope string
	// ExpiresIn is the lifetime Maskinporten gave the token.
	ExpiresIn time.Duration
	// IssuedAt is when the successful request started: expiry counts from
	// there, so network time is never counted as validity.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// GrantJTI is the jti of the grant that obtained the token.
	GrantJTI string
}

// Remaining is the token's validity left at now.
func (t Token) Remaining(now time.Time) time.Duration { return t.ExpiresAt.Sub(now) }

// maxExpiresIn is the longest lifetime believed: Maskinporten issues
// minutes to a few hours; a larger value is a broken answer, and trusting
// it would keep a token cached long after it died.
const maxExpiresIn = 24 * time.Hour

// TokenResponse is the body of a successful token response.
type TokenResponse struct {
	AccessToken string
	TokenType   string
	ExpiresIn   time.Duration
	Scope       string
}

// ParseTokenResponse reads a 200 response. Everything a caller relies on
// is checked: a token, the Bearer type, a plausible lifetime.
func ParseTokenResponse(body []byte) (TokenResponse, error) {
	var raw struct {
		AccessToken *string      `json:"access_token"`
		TokenType   *string      `json:"token_type"`
		ExpiresIn   *json.Number `json:"expires_in"`
		Scope       string       `json:"scope"`
	}
	if err := decodeJSON(body, &raw); err != nil {
		return TokenResponse{}, fmt.Errorf("%w: the token response is not a JSON object: %w", ErrBadResponse, err)
	}
	switch {
	case raw.AccessToken == nil || *raw.AccessToken == "":
		return TokenResponse{}, fmt.Errorf("%w: the token response has no access_token", ErrBadResponse)
	case raw.TokenType == nil || !strings.EqualFold(*raw.TokenType, "Bearer"):
		return TokenResponse{}, fmt.Errorf("%w: token_type is %s, want Bearer", ErrBadResponse, quoteOrMissing(raw.TokenType))
	case raw.ExpiresIn == nil:
		return TokenResponse{}, fmt.Errorf("%w: the token response has no expires_in", ErrBadResponse)
	}
	secs, err := raw.ExpiresIn.Int64()
	if err != nil || secs <= 0 || time.Duration(secs)*time.Second > maxExpiresIn {
		return TokenResponse{}, fmt.Errorf("%w: expires_in %q is not a whole number of seconds between 1 and %d", ErrBadResponse, clean(raw.ExpiresIn.String(), 32), int64(maxExpiresIn/time.Second))
	}
	if strings.ContainsAny(*raw.AccessToken, " \t\r\n") {
		return TokenResponse{}, fmt.Errorf("%w: the access_token contains white space", ErrBadResponse)
	}
	return TokenResponse{
		AccessToken: *raw.AccessToken,
		TokenType:   "Bearer",
		ExpiresIn:   time.Duration(secs) * time.Second,
		Scope:       clean(raw.Scope, 1024),
	}, nil
}

func quoteOrMissing(s *string) string {
	if s == nil {
		return "missing"
	}
	return fmt.Sprintf("%q", clean(*s, 32))
}

// decodeJSON decodes one JSON object and refuses trailing data.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
