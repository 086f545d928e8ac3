package daemon

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/portvakt/portvakt/maskinporten"
)

// maskinporten checks, for each environment, that the issuer's metadata
// resolves (when the token endpoint is discovered) and that the token
// endpoint answers. The request sent to it carries no grant: Maskinporten
// refuses it (HTTP 400), and any answer shows the endpoint is reachable
// through whatever proxy and firewall are between.
func (c *checker) maskinporten(ctx context.Context) {
	timeout := cmp.Or(c.d.cfg.Maskinporten.RequestTimeout, maskinporten.DefaultRequestTimeout)
	client := &http.Client{Transport: maskinporten.DefaultTransport(), Timeout: timeout}
	defer client.CloseIdleConnections()
	discovery := maskinporten.NewDiscovery(client, 0)
	for _, e := range c.d.cfg.Environments {
		env, err := e.Resolve()
		if err != nil {
			continue // the key's check says so
		}
		endpoint := env.TokenEndpoint
		if e.Discovery {
			// Without a configured endpoint to fall back to, the
			// discovery's own error shows.
			alone := env
			alone.TokenEndpoint = ""
			found, err := discovery.TokenEndpoint(ctx, alone)
			if !c.report.result(err, "discovery", e.Name, fmt.Sprintf("%s names the token endpoint %s", env.MetadataURL(), found)) {
				if endpoint == "" {
					continue
				}
			} else {
				endpoint = found
			}
		}
		status, err := probeTokenEndpoint(ctx, client, endpoint)
		if err != nil {
			c.report.add(CheckFailed, "token endpoint", e.Name, fmt.Sprintf("the token endpoint %s cannot be reached: %v; check the URL, DNS, the firewall and the proxy (HTTPS_PROXY)", endpoint, err))
			continue
		}
		c.report.add(CheckOK, "token endpoint", e.Name, fmt.Sprintf("%s answers (HTTP %d to a request without a grant)", endpoint, status))
	}
}

// probeTokenEndpoint posts an empty form to the token endpoint, and
// returns the HTTP status of its answer, whatever it is.
func probeTokenEndpoint(ctx context.Context, client *http.Client, endpoint string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(""))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "portvakt")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}
