package maskinporten

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Metadata is the part of RFC 8414 authorization server metadata Portvakt
// uses.
type Metadata struct {
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
	JWKSURI       string `json:"jwks_uri"`
}

// Discovery finds token endpoints from the issuers' metadata and caches
// them. An outage of the metadata never stops tokens whose endpoint is
// already known: a stale entry is refreshed by the next caller and used
// when the refresh fails, and the configured endpoint stands in when
// nothing was ever fetched. It starts no goroutine of its own, so nothing
// of it outlives the calls that use it.
type Discovery struct {
	http    *http.Client
	ttl     time.Duration
	timeout time.Duration

	mu      sync.Mutex
	entries map[string]discovered
	flight  singleflight.Group
	onDate  func(issuer, date string, sent, received time.Time)
}

type discovered struct {
	meta    Metadata
	fetched time.Time
}

// NewDiscovery caches metadata for ttl (default 1 hour).
func NewDiscovery(client *http.Client, ttl time.Duration) *Discovery {
	if client == nil {
		client = &http.Client{Transport: DefaultTransport()}
	}
	if ttl == 0 {
		ttl = time.Hour
	}
	return &Discovery{http: client, ttl: ttl, timeout: 5 * time.Second, entries: map[string]discovered{}}
}

// ObserveDates has the Date of every metadata answer reported to f, with
// the issuer and the local times (time.Now) the request was sent and the
// answer received: what a Clock learns Maskinporten's time from
// (Clock.Observe), before the first grant is made. Call it before the
// first TokenEndpoint.
func (d *Discovery) ObserveDates(f func(issuer, date string, sent, received time.Time)) { d.onDate = f }

// TokenEndpoint returns the environment's token endpoint: from fresh
// metadata, else stale metadata, else the configured endpoint.
func (d *Discovery) TokenEndpoint(ctx context.Context, env Environment) (string, error) {
	d.mu.Lock()
	entry, ok := d.entries[env.Issuer]
	d.mu.Unlock()
	if ok && time.Since(entry.fetched) <= d.ttl {
		return entry.meta.TokenEndpoint, nil
	}
	// Once an hour at most, a miss (which posts to Maskinporten anyway)
	// waits for the metadata too.
	meta, err := d.refresh(ctx, env)
	switch {
	case err == nil:
		return meta.TokenEndpoint, nil
	case ok:
		return entry.meta.TokenEndpoint, nil
	case env.TokenEndpoint != "":
		return env.TokenEndpoint, nil
	}
	return "", fmt.Errorf("environment %s: %w: no token endpoint is configured, and %w", env.Name, ErrDiscovery, err)
}

// refresh fetches the metadata once for all concurrent callers.
func (d *Discovery) refresh(ctx context.Context, env Environment) (Metadata, error) {
	v, err, _ := d.flight.Do(env.Issuer, func() (any, error) {
		meta, err := d.fetch(ctx, env)
		if err != nil {
			return Metadata{}, err
		}
		d.mu.Lock()
		d.entries[env.Issuer] = discovered{meta: meta, fetched: time.Now()}
		d.mu.Unlock()
		return meta, nil
	})
	return v.(Metadata), err
}

func (d *Discovery) fetch(ctx context.Context, env Environment) (Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.MetadataURL(), nil)
	if err != nil {
		return Metadata{}, err
	}
	req.Header.Set("Accept", "application/json")
	sent := time.Now()
	resp, err := d.http.Do(req)
	if err != nil {
		return Metadata{}, &networkError{what: env.MetadataURL(), err: err}
	}
	defer resp.Body.Close()
	if d.onDate != nil {
		d.onDate(env.Issuer, resp.Header.Get("Date"), sent, time.Now())
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil {
		return Metadata{}, &networkError{what: env.MetadataURL(), err: fmt.Errorf("reading the answer: %w", err)}
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return Metadata{}, &networkError{what: env.MetadataURL(), err: fmt.Errorf("HTTP %d", resp.StatusCode)}
	case resp.StatusCode != http.StatusOK:
		return Metadata{}, fmt.Errorf("%w: %s answered HTTP %d", ErrBadResponse, env.MetadataURL(), resp.StatusCode)
	}
	return ParseMetadata(body, env.Issuer)
}

// ParseMetadata reads metadata and checks it is the expected issuer's: a
// document naming another issuer could send grants to the wrong server.
func ParseMetadata(body []byte, issuer string) (Metadata, error) {
	var meta Metadata
	if err := decodeJSON(body, &meta); err != nil {
		return Metadata{}, fmt.Errorf("%w: metadata is not a JSON object: %w", ErrBadResponse, err)
	}
	if meta.Issuer != issuer {
		return Metadata{}, fmt.Errorf("%w: metadata names issuer %q, expected %q", ErrBadResponse, clean(meta.Issuer, 200), issuer)
	}
	if err := checkURL(meta.TokenEndpoint); err != nil {
		return Metadata{}, fmt.Errorf("%w: metadata token_endpoint: %w", ErrBadResponse, err)
	}
	return meta, nil
}

// CloseIdleConnections closes the kept-alive connections no request uses.
func (d *Discovery) CloseIdleConnections() { d.http.CloseIdleConnections() }
