package daemon

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/portvakt/portvakt/config"
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
		status, err := probe(ctx, client, http.MethodPost, endpoint) // an empty form: no grant
		if err != nil {
			c.report.add(CheckFailed, "token endpoint", e.Name, fmt.Sprintf("the token endpoint %s cannot be reached: %v; check the URL, DNS, the firewall and the proxy (HTTPS_PROXY)", endpoint, err))
			continue
		}
		c.report.add(CheckOK, "token endpoint", e.Name, fmt.Sprintf("%s answers (HTTP %d to a request without a grant)", endpoint, status))
		c.selfService(ctx, client, e, env)
	}
}

// selfService checks that Digdir's self-service API answers, for an
// environment that uses it: a rotation needs it (a failure), and an
// environment that names it (self_service.url) has `keys list` and `keys
// register` use it (a warning). The request carries no token, so that
// the check signs nothing and writes nothing: the API refuses it (HTTP
// 401), and any answer shows it is reachable.
func (c *checker) selfService(ctx context.Context, client *http.Client, e config.Environment, env maskinporten.Environment) {
	named := e.SelfService.URL != "" && e.SelfService.URL != "none"
	if env.SelfServiceURL == "" || (e.Rotation == nil && !named) {
		return
	}
	failed, use := CheckWarning, "keys list and keys register need it"
	if e.Rotation != nil {
		failed, use = CheckFailed, "the key rotation needs it"
	}
	endpoint, err := url.JoinPath(env.SelfServiceURL, "clients", e.ClientID, "jwks")
	if err != nil {
		c.report.add(failed, "self-service API", e.Name, fmt.Sprintf("self_service.url %q: %v", env.SelfServiceURL, err))
		return
	}
	status, err := probe(ctx, client, http.MethodGet, endpoint)
	if err != nil {
		c.report.add(failed, "self-service API", e.Name, fmt.Sprintf("Digdir's self-service API %s cannot be reached, and %s: %v; check self_service.url, DNS, the firewall and the proxy (HTTPS_PROXY)", endpoint, use, err))
		return
	}
	c.report.add(CheckOK, "self-service API", e.Name, fmt.Sprintf("%s answers (HTTP %d to a request without a token)", endpoint, status))
}

// probe sends endpoint a request without a body's content or any
// credential (an empty form, for a POST), and returns the HTTP status of
// its answer, whatever it is.
func probe(ctx context.Context, client *http.Client, method, endpoint string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, endpoint, strings.NewReader(""))
	if err != nil {
		return 0, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
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
