// Package maskinporten speaks Maskinporten's token protocol: the
// environments, the JWT grant signed in the HSM, one token request at a
// time (the token cache decides on retries), and the parsing of tokens and
// errors. The protocol facts it
// follows are in docs/maskinporten.md.
package maskinporten

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
)

// Environment is one Maskinporten installation.
type Environment struct {
	// Name is how configuration and callers refer to it ("prod", "test").
	Name string
	// Issuer is Maskinporten's issuer identifier, the grant's aud: exact,
	// trailing slash included.
	Issuer string
	// TokenEndpoint is where grants are posted.
	TokenEndpoint string
	// Resource is the default audience of Statens vegvesen's APIs here,
	// asked for when a request names none (may be empty).
	Resource string
	// SelfServiceURL is Digdir's self-service API for the integrations
	// here (their registered keys); empty when there is none.
	SelfServiceURL string
}

// Presets are the environments Portvakt knows by name. ver2 is the SVV
// guide's old TEST, retired in June 2024, kept for old configurations.
var Presets = map[string]Environment{
	"prod": {Name: "prod", Issuer: "https://maskinporten.no/", TokenEndpoint: "https://maskinporten.no/token", Resource: "https://www.vegvesen.no",
		SelfServiceURL: "https://api.samarbeid.digdir.no/api/v1/"},
	"test": {Name: "test", Issuer: "https://test.maskinporten.no/", TokenEndpoint: "https://test.maskinporten.no/token", Resource: "https://www.utv.vegvesen.no",
		SelfServiceURL: "https://api.test.samarbeid.digdir.no/api/v1/"},
	"ver2": {Name: "ver2", Issuer: "https://ver2.maskinporten.no/", TokenEndpoint: "https://ver2.maskinporten.no/token", Resource: "https://www.utv.vegvesen.no"},
}

// retired are the presets whose environment Digdir has shut down, with
// what to say to an operator still using one.
var retired = map[string]string{
	"ver2": "Maskinporten's ver2 environment was retired on 10 June 2024: its grants are no longer answered; use preset test (https://test.maskinporten.no/) instead",
}

// PresetWarning says why a preset should no longer be used, or "" for one
// in service.
func PresetWarning(name string) string { return retired[name] }

// Preset returns the named preset.
func Preset(name string) (Environment, error) {
	env, ok := Presets[name]
	if !ok {
		names := make([]string, 0, len(Presets))
		for n := range Presets {
			names = append(names, n)
		}
		sort.Strings(names)
		return Environment{}, fmt.Errorf("unknown Maskinporten environment %q: choose one of %s, or give an issuer and token endpoint", name, strings.Join(names, ", "))
	}
	return env, nil
}

// Validate checks that the environment can be used: URLs that are
// absolute, HTTPS (plain HTTP only on loopback, for the local simulator),
// and an issuer with its trailing slash.
func (e Environment) Validate() error {
	if e.Name == "" {
		return fmt.Errorf("environment has no name")
	}
	if err := checkURL(e.Issuer); err != nil {
		return fmt.Errorf("environment %s: issuer: %w", e.Name, err)
	}
	if !strings.HasSuffix(e.Issuer, "/") {
		return fmt.Errorf("environment %s: issuer %q must end with \"/\": Maskinporten compares aud exactly", e.Name, e.Issuer)
	}
	if e.TokenEndpoint != "" {
		if err := checkURL(e.TokenEndpoint); err != nil {
			return fmt.Errorf("environment %s: token endpoint: %w", e.Name, err)
		}
	}
	if e.SelfServiceURL != "" {
		if err := checkURL(e.SelfServiceURL); err != nil {
			return fmt.Errorf("environment %s: self-service URL: %w", e.Name, err)
		}
	}
	return nil
}

// MetadataURL is where the issuer publishes its RFC 8414 metadata.
func (e Environment) MetadataURL() string {
	return e.Issuer + ".well-known/oauth-authorization-server"
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	default:
		return fmt.Errorf("%q must use https (plain http only on loopback)", raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
