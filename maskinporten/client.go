package maskinporten

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portvakt/portvakt/secret"
)

// grantType is the OAuth grant type of a JWT bearer grant (RFC 7523).
const grantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// DefaultRequestTimeout bounds one attempt when ClientOptions say nothing.
const DefaultRequestTimeout = 10 * time.Second

// ClientOptions configure a Client.
type ClientOptions struct {
	// HTTPClient, when set, replaces the default: TLS 1.2 or newer with the
	// system's roots, the proxy from HTTPS_PROXY/NO_PROXY.
	HTTPClient *http.Client
	// RequestTimeout bounds one attempt. Default 10 s.
	RequestTimeout time.Duration
	// MaxResponseBytes bounds what is read of a response. Default 1 MiB.
	MaxResponseBytes int64
	// UserAgent is sent with every request. Default "portvakt".
	UserAgent string
	// Now is the clock a token's validity counts from. Default time.Now.
	Now func() time.Time
}

// Client posts grants to a token endpoint, one attempt at a time: whoever
// calls it decides whether to try again (the token cache does, under its
// back-off and circuit breaker), and signs a new grant for each attempt.
type Client struct {
	http      *http.Client
	timeout   time.Duration
	maxBody   int64
	userAgent string
	now       func() time.Time
}

// NewClient applies the defaults.
func NewClient(opts ClientOptions) *Client {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: DefaultTransport()}
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = 1 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "portvakt"
	}
	return &Client{http: opts.HTTPClient, timeout: opts.RequestTimeout, maxBody: opts.MaxResponseBytes, userAgent: opts.UserAgent, now: opts.Now}
}

// DefaultTransport is the HTTP transport the client and discovery use when
// given none: the environment's proxy (HTTPS_PROXY, NO_PROXY), TLS 1.2 or
// newer. Whatever else reaches Maskinporten (serve --check) uses it too, so
// that it goes the same way through proxies and firewalls.
func DefaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	// Keep as many idle connections to Maskinporten's one host as the
	// transport keeps at all (100), not net/http's 2: when many cold keys
	// are fetched at once over HTTP/1.1, every POST past the second would
	// otherwise close its connection after it, and the next pay a new TCP
	// and TLS handshake.
	t.MaxIdleConnsPerHost = t.MaxIdleConns
	return t
}

// Attempt is one posted grant and how it ended, for metrics.
type Attempt struct {
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// MPCode is Maskinporten's MP code of a refusal, if it gave one.
	MPCode string
	Err    error
	// Date is the answer's Date header as sent, refusals included ("" when
	// no answer came), and Sent and Received the local times (time.Now)
	// the request left and the answer came: what a Clock learns
	// Maskinporten's time from (Clock.Observe).
	Date           string
	Sent, Received time.Time
}

// Duration is how long the attempt took; 0 for one never posted.
func (a Attempt) Duration() time.Duration { return a.Received.Sub(a.Sent) }

// Posted reports whether the attempt reached the point of posting.
func (a Attempt) Posted() bool { return !a.Sent.IsZero() }

// Post sends one signed grant to the token endpoint and reads the answer:
// one attempt, never retried here. The error is an *Error when
// Maskinporten (or whatever answered for it) refused, a temporary error
// (IsTemporary) when no answer came in time, and wraps ErrBadResponse when
// the answer could not be understood.
func (c *Client) Post(ctx context.Context, endpoint string, grant Grant) (Token, Attempt, error) {
	if err := checkURL(endpoint); err != nil {
		return Token{}, Attempt{}, fmt.Errorf("%w: token endpoint: %w", ErrInvalidRequest, err)
	}
	start := c.now()
	began := time.Now() // the duration is measured on the monotonic clock
	status, header, body, err := c.post(ctx, endpoint, grant.Assertion)
	attempt := Attempt{Status: status, Date: header.Get("Date"), Sent: began, Received: time.Now()}
	switch {
	case errors.Is(err, ErrBadResponse):
	case err != nil:
		err = &networkError{err: err}
	case status != http.StatusOK:
		mpErr := ParseError(status, header, body)
		attempt.MPCode, err = mpErr.MPCode, mpErr
	}
	var resp TokenResponse
	if err == nil {
		resp, err = ParseTokenResponse(body)
	}
	var access secret.Value
	if err == nil {
		access, err = secret.New(resp.AccessToken)
	}
	attempt.Err = err
	if err != nil {
		return Token{}, attempt, err
	}
	return Token{
		AccessToken: access,
		TokenType:   resp.TokenType,
		Scope:       resp.Scope,
		ExpiresIn:   resp.ExpiresIn,
		IssuedAt:    start,
		ExpiresAt:   start.Add(resp.ExpiresIn),
		GrantJTI:    grant.JTI,
	}, attempt, nil
}

func (c *Client) post(ctx context.Context, endpoint string, assertion secret.Value) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	form := url.Values{"grant_type": {grantType}, "assertion": {assertion.Reveal()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the response: %w", err)
	}
	if int64(len(body)) > c.maxBody {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("%w: the response is larger than %d bytes", ErrBadResponse, c.maxBody)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// networkError marks a failure to get any answer in time: worth another
// attempt. what is the URL, or "" for the token endpoint.
type networkError struct {
	what string
	err  error
}

func (e *networkError) Error() string {
	what := e.what
	if what == "" {
		what = "the token endpoint"
	}
	return "Maskinporten unreachable: " + what + ": " + e.err.Error()
}
func (e *networkError) Unwrap() error { return e.err }

// IsTemporary reports whether err is a failure that may pass: Maskinporten
// (or its metadata) unreachable or too slow, rate limiting or a server
// error. An answer that could not be understood is not temporary.
func IsTemporary(err error) bool {
	var mpErr *Error
	var netErr *networkError
	if errors.Is(err, ErrBadResponse) {
		return false
	}
	return (errors.As(err, &mpErr) && mpErr.Retryable()) || errors.As(err, &netErr)
}

// RetryAfter is the Retry-After a refusal carried, or 0.
func RetryAfter(err error) time.Duration {
	var mpErr *Error
	if errors.As(err, &mpErr) {
		return mpErr.RetryAfter
	}
	return 0
}

// CloseIdleConnections closes the kept-alive connections to Maskinporten
// that no request uses, at shutdown.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }
