package selfservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portvakt/portvakt/secret"
)

// The self-service scopes a token for the API needs.
const (
	ScopeRead   = "idporten:dcr.read"
	ScopeModify = "idporten:dcr.modify"
)

// MaxKeys is how many keys an integration's set may hold.
const MaxKeys = 5

// DefaultKeyBits is the size of the registered keys Portvakt makes when
// not told otherwise (`keys register`, a rotation): the size Digdir
// documents for registered keys, RS256 with 2048-bit RSA keys. An eSeal's
// key, which a CA certifies, defaults to 3072 (hsm.DefaultKeyBits).
const DefaultKeyBits = 2048

// TokenFunc gets a Maskinporten token for the self-service scopes.
type TokenFunc func(ctx context.Context) (secret.Value, error)

// Set is an integration's registered keys, as the API has them.
type Set struct {
	Keys []JWK
	// Created and Updated are the set's times, zero when the API gave none.
	Created, Updated time.Time
}

// Kid finds the key with kid.
func (s Set) Kid(kid string) (JWK, bool) {
	for _, k := range s.Keys {
		if k.Kid == kid {
			return k, true
		}
	}
	return JWK{}, false
}

// Options configure a Client.
type Options struct {
	// HTTPClient, when set, replaces http.DefaultClient's transport
	// with the caller's (the daemon's, with its proxy and TLS settings).
	HTTPClient *http.Client
	// Timeout bounds one request. Default 20 s.
	Timeout time.Duration
}

// Client reads and replaces registered keys at one self-service API.
type Client struct {
	base    *url.URL
	http    *http.Client
	token   TokenFunc
	timeout time.Duration
}

// maxResponseBytes bounds what is read of an answer: five keys with
// certificate chains are a few tens of kilobytes.
const maxResponseBytes = 1 << 20

// New is a client of the API at baseURL (Digdir's:
// https://api.samarbeid.digdir.no/api/v1/, in test
// https://api.test.samarbeid.digdir.no/api/v1/), authorised by token.
func New(baseURL string, token TokenFunc, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("self-service API URL %q: give an absolute https URL such as https://api.samarbeid.digdir.no/api/v1/", baseURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Timeout == 0 {
		opts.Timeout = 20 * time.Second
	}
	return &Client{base: u, http: opts.HTTPClient, token: token, timeout: opts.Timeout}, nil
}

// Keys reads clientID's set.
func (c *Client) Keys(ctx context.Context, clientID string) (Set, error) {
	return c.do(ctx, http.MethodGet, clientID, nil)
}

// Replace puts keys in place of clientID's whole set and returns the set
// as the API then has it. A set over MaxKeys keys, or with a kid twice,
// is refused here, before anything is sent. Keys the set holds now and
// keys is without are removed: read the set first, and keep every key in
// use.
func (c *Client) Replace(ctx context.Context, clientID string, keys []JWK) (Set, error) {
	if err := CheckSet(keys); err != nil {
		return Set{}, err
	}
	sent := make([]JWK, len(keys))
	for i, k := range keys {
		k.Exp = 0 // Maskinporten's to set
		sent[i] = k
	}
	body, err := json.Marshal(map[string][]JWK{"keys": sent})
	if err != nil {
		return Set{}, err
	}
	return c.do(ctx, http.MethodPost, clientID, body)
}

// CheckSet refuses a set the API would: over MaxKeys keys, or a kid
// empty or twice.
func CheckSet(keys []JWK) error {
	if len(keys) > MaxKeys {
		return fmt.Errorf("%d keys: an integration holds at most %d; remove a key no longer in use first", len(keys), MaxKeys)
	}
	seen := map[string]bool{}
	for i, k := range keys {
		switch {
		case k.Kid == "":
			return fmt.Errorf("key %d has no kid", i+1)
		case seen[k.Kid]:
			return fmt.Errorf("kid %q twice in the set: every key needs its own kid", k.Kid)
		}
		seen[k.Kid] = true
	}
	return nil
}

// ErrUnavailable means the API could not be asked or did not answer
// (network, timeout, 5xx): nothing is known to have changed.
var ErrUnavailable = errors.New("the self-service API is unavailable")

// ErrRefused is what every *RefusedError is.
var ErrRefused = errors.New("the self-service API refused the request")

// RefusedError is the API's 4xx answer.
type RefusedError struct {
	Method, ClientID string
	Status           int
	// Code and Description are the answer's error and error_description
	// (or its body's start, if it was not such JSON).
	Code, Description string
}

func (e *RefusedError) Error() string {
	what := "reading the keys of"
	if e.Method != http.MethodGet {
		what = "replacing the keys of"
	}
	msg := fmt.Sprintf("the self-service API refused %s integration %q: HTTP %d", what, e.ClientID, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += "; the integration's self-service token needs idporten:dcr.read and idporten:dcr.modify, from a grant signed with the owner's enterprise certificate"
	case http.StatusNotFound:
		msg += "; check the environment's client_id"
	}
	return msg
}

func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

func (c *Client) do(ctx context.Context, method, clientID string, body []byte) (Set, error) {
	if clientID == "" || strings.ContainsAny(clientID, "/?#") {
		return Set{}, fmt.Errorf("client id %q: give the integration's id", clientID)
	}
	token, err := c.token(ctx)
	if err != nil {
		return Set{}, fmt.Errorf("a token for the self-service API: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	endpoint := c.base.JoinPath("clients", clientID, "jwks")
	req, err := http.NewRequestWithContext(ctx, method, endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return Set{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error names the URL and the cause; never the header.
		return Set{}, fmt.Errorf("%w: %s %s: %v", ErrUnavailable, method, endpoint.Redacted(), errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Set{}, fmt.Errorf("%w: reading the answer to %s %s: %v", ErrUnavailable, method, endpoint.Redacted(), err)
	}
	switch {
	case resp.StatusCode >= 500:
		return Set{}, fmt.Errorf("%w: %s %s answered HTTP %d", ErrUnavailable, method, endpoint.Redacted(), resp.StatusCode)
	case resp.StatusCode >= 400:
		return Set{}, refusal(method, clientID, resp.StatusCode, data)
	case resp.StatusCode != http.StatusOK:
		return Set{}, fmt.Errorf("%s %s answered HTTP %d; want 200", method, endpoint.Redacted(), resp.StatusCode)
	case len(data) > maxResponseBytes:
		return Set{}, fmt.Errorf("the answer to %s %s is over %d bytes", method, endpoint.Redacted(), maxResponseBytes)
	}
	set, err := ParseSet(data)
	if err != nil {
		return Set{}, fmt.Errorf("the answer to %s %s: %w", method, endpoint.Redacted(), err)
	}
	return set, nil
}

func refusal(method, clientID string, status int, body []byte) *RefusedError {
	e := &RefusedError{Method: method, ClientID: clientID, Status: status}
	var eb struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &eb) == nil && (eb.Error != "" || eb.Description != "") {
		e.Code, e.Description = clean(eb.Error, 64), clean(eb.Description, 512)
	} else {
		e.Description = clean(string(body), 200)
	}
	return e
}

// clean keeps at most n bytes of s, printable: an answer's words go into
// errors and logs.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.TrimSpace(s)
}

// ParseSet reads the API's answer: {"keys": [...], "created", "last_updated"}.
// Every key must be one this package can use (RSA of at least 2048 bits,
// a kid), so that what is shown and decided on is what Maskinporten has.
func ParseSet(data []byte) (Set, error) {
	var doc struct {
		Keys        []JWK  `json:"keys"`
		Created     string `json:"created"`
		LastUpdated string `json:"last_updated"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return Set{}, fmt.Errorf("not a key set: %v", err)
	}
	if doc.Keys == nil {
		return Set{}, errors.New(`not a key set: no "keys" array`)
	}
	set := Set{Keys: doc.Keys}
	for _, k := range doc.Keys {
		if k.Kid == "" {
			return Set{}, errors.New("a key of the set has no kid")
		}
		if _, err := k.PublicKey(); err != nil {
			return Set{}, err
		}
	}
	var err error
	if set.Created, err = apiTime("created", doc.Created); err != nil {
		return Set{}, err
	}
	if set.Updated, err = apiTime("last_updated", doc.LastUpdated); err != nil {
		return Set{}, err
	}
	return set, nil
}

func apiTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not an RFC 3339 time", name, clean(v, 40))
	}
	return t, nil
}
