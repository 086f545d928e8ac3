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

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/secret"
)

// grantType is the OAuth grant type of a JWT bearer grant (RFC 7523).
const grantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// RetryPolicy says when a failed token request is tried again: only after
// a network error, 429 or 5xx, and only within the deadline.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts, the first included. Default 4.
	MaxAttempts int
	// Initial and Max bound the back-off (full jitter) between attempts.
	// Defaults 200 ms and 5 s. A longer Retry-After from the server wins,
	// up to Max.
	Initial, Max time.Duration
	// Deadline bounds all attempts together. Default 30 s. A shorter
	// context deadline wins.
	Deadline time.Duration
}

// ClientOptions configure a Client.
type ClientOptions struct {
	// HTTPClient, when set, replaces the default: TLS 1.2 or newer with the
	// system's roots, the proxy from HTTPS_PROXY/NO_PROXY.
	HTTPClient *http.Client
	// RequestTimeout bounds one attempt. Default 10 s.
	RequestTimeout time.Duration
	// MaxResponseBytes bounds what is read of a response. Default 1 MiB.
	MaxResponseBytes int64
	// Retry is the retry policy.
	Retry RetryPolicy
	// UserAgent is sent with every request. Default "portvakt".
	UserAgent string
}

// Client posts grants to a token endpoint.
type Client struct {
	http      *http.Client
	timeout   time.Duration
	maxBody   int64
	retry     RetryPolicy
	userAgent string
}

// NewClient applies the defaults.
func NewClient(opts ClientOptions) *Client {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: defaultTransport()}
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = 1 << 20
	}
	r := &opts.Retry
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 4
	}
	if r.Initial == 0 {
		r.Initial = 200 * time.Millisecond
	}
	if r.Max == 0 {
		r.Max = 5 * time.Second
	}
	if r.Deadline == 0 {
		r.Deadline = 30 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "portvakt"
	}
	return &Client{http: opts.HTTPClient, timeout: opts.RequestTimeout, maxBody: opts.MaxResponseBytes, retry: opts.Retry, userAgent: opts.UserAgent}
}

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return t
}

// Exchange is one token request: where to send it, how to sign it and
// what to ask for.
type Exchange struct {
	// Endpoint is the token endpoint URL.
	Endpoint string
	Builder  *GrantBuilder
	Request  GrantRequest
	// BeforePost, when set, is called with each signed grant before it is
	// sent; an error stops the exchange and the grant is never used. The
	// audit log records the signature here.
	BeforePost func(ctx context.Context, g Grant) error
	// Observe, when set, is told of every attempt that reached the point
	// of posting: for latency and error metrics.
	Observe func(Attempt)
}

// Attempt is one posted grant and how it ended.
type Attempt struct {
	Duration time.Duration
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// MPCode is Maskinporten's MP code of a refusal, if it gave one.
	MPCode string
	Err    error
}

// Token obtains an access token. Each attempt signs a new grant with a new
// jti. The error is an *Error when Maskinporten refused, and wraps
// ErrInvalidRequest, ErrBadResponse or the signer's error otherwise.
func (c *Client) Token(ctx context.Context, x Exchange) (Token, error) {
	if err := x.Request.Validate(); err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err := checkURL(x.Endpoint); err != nil {
		return Token{}, fmt.Errorf("%w: token endpoint: %w", ErrInvalidRequest, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.retry.Deadline)
	defer cancel()
	for attempt := 1; ; attempt++ {
		tok, err := c.attempt(ctx, x)
		if err == nil {
			return tok, nil
		}
		wait, retry := c.shouldRetry(ctx, err, attempt)
		if !retry {
			if attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return Token{}, err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return Token{}, fmt.Errorf("after %d attempts: %w", attempt, err)
		case <-timer.C:
		}
	}
}

// attempt signs one grant and posts it.
func (c *Client) attempt(ctx context.Context, x Exchange) (Token, error) {
	grant, err := x.Builder.Build(x.Request)
	if err != nil {
		return Token{}, err
	}
	if x.BeforePost != nil {
		if err := x.BeforePost(ctx, grant); err != nil {
			return Token{}, fmt.Errorf("grant %s not sent: %w", grant.JTI, err)
		}
	}
	start := time.Now()
	status, header, body, err := c.post(ctx, x.Endpoint, grant.Assertion)
	observe := func(err error) {
		if x.Observe != nil {
			a := Attempt{Duration: time.Since(start), Status: status, Err: err}
			var mpErr *Error
			if errors.As(err, &mpErr) {
				a.MPCode = mpErr.MPCode
			}
			x.Observe(a)
		}
	}
	if err != nil {
		err = &networkError{err: err}
		observe(err)
		return Token{}, err
	}
	if status != http.StatusOK {
		mpErr := ParseError(status, header, body)
		observe(mpErr)
		return Token{}, mpErr
	}
	resp, err := ParseTokenResponse(body)
	observe(err)
	if err != nil {
		return Token{}, err
	}
	access, err := secret.New(resp.AccessToken)
	if err != nil {
		return Token{}, err
	}
	return Token{
		AccessToken: access,
		TokenType:   resp.TokenType,
		Scope:       resp.Scope,
		ExpiresIn:   resp.ExpiresIn,
		IssuedAt:    start,
		ExpiresAt:   start.Add(resp.ExpiresIn),
		GrantJTI:    grant.JTI,
	}, nil
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
		return 0, nil, nil, fmt.Errorf("%w: the response is larger than %d bytes", ErrBadResponse, c.maxBody)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// networkError marks a failure to get any answer: worth another attempt.
type networkError struct{ err error }

func (e *networkError) Error() string { return "token endpoint unreachable: " + e.err.Error() }
func (e *networkError) Unwrap() error { return e.err }

// shouldRetry decides whether and after how long to try again.
func (c *Client) shouldRetry(ctx context.Context, err error, attempt int) (time.Duration, bool) {
	if attempt >= c.retry.MaxAttempts || ctx.Err() != nil {
		return 0, false
	}
	var retryAfter time.Duration
	var mpErr *Error
	var netErr *networkError
	switch {
	case errors.As(err, &mpErr) && mpErr.Retryable():
		retryAfter = mpErr.RetryAfter
	case errors.As(err, &netErr) && !errors.Is(err, ErrBadResponse):
	default:
		return 0, false
	}
	wait := backoff.Policy{Initial: c.retry.Initial, Max: c.retry.Max}.Delay(attempt)
	if retryAfter > wait {
		wait = min(retryAfter, c.retry.Max)
	}
	if deadline, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(deadline) {
		return 0, false
	}
	return wait, true
}

// IsTemporary reports whether err is a failure that may pass: Maskinporten
// unreachable, rate limiting or a server error.
func IsTemporary(err error) bool {
	var mpErr *Error
	var netErr *networkError
	return (errors.As(err, &mpErr) && mpErr.Retryable()) || errors.As(err, &netErr)
}
