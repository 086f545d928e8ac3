package mpsim

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/portvakt/portvakt/internal/strictyaml"
	"github.com/portvakt/portvakt/orgno"
)

// fileConfig is the YAML form of Config; see the package documentation.
type fileConfig struct {
	Issuer        string        `yaml:"issuer"`
	TokenLifetime time.Duration `yaml:"token_lifetime"`
	ClockSkew     time.Duration `yaml:"clock_skew"`
	ClockOffset   time.Duration `yaml:"clock_offset"`
	// The self-service API's registered keys.
	KeyActivationDelay    time.Duration    `yaml:"key_activation_delay"`
	RegisteredKeyLifetime time.Duration    `yaml:"registered_key_lifetime"`
	TrustRoots            []string         `yaml:"trust_roots"`
	Clients               []fileClient     `yaml:"clients"`
	Delegations           []fileDelegation `yaml:"delegations"`
	Access                []fileAccess     `yaml:"consumer_access"`
	SystemUsers           []fileSystemUser `yaml:"system_users"`
	Faults                Faults           `yaml:"faults"`
}

type fileClient struct {
	ClientID  string    `yaml:"client_id"`
	OrgNumber string    `yaml:"org_number"`
	Scopes    []string  `yaml:"scopes"`
	Keys      []fileKey `yaml:"keys"`
}

type fileKey struct {
	KID       string `yaml:"kid"`
	PublicKey string `yaml:"public_key"`
}

type fileDelegation struct {
	ConsumerOrg      string   `yaml:"consumer_org"`
	SupplierClientID string   `yaml:"supplier_client_id"`
	Scopes           []string `yaml:"scopes"`
}

type fileAccess struct {
	Org    string   `yaml:"org"`
	Scopes []string `yaml:"scopes"`
}

type fileSystemUser struct {
	ClientID    string `yaml:"client_id"`
	SystemID    string `yaml:"system_id"`
	Customer    string `yaml:"customer"`
	ExternalRef string `yaml:"external_ref"`
	ID          string `yaml:"id"`
}

// LoadConfig reads a YAML configuration file (format in the package
// documentation). Decoding is strict: an unknown or misspelt key is an
// error naming its line, because a silently ignored setting would make the
// simulator behave unlike what its author believes. PEM paths are resolved
// against the file's directory unless absolute.
//
// The issuer may be left out, for a caller that derives it from its listen
// address; everything else is validated as New would.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("mpsim: reading config: %w", err)
	}
	var fc fileConfig
	if err := strictyaml.Decode("mpsim: config "+path, data, &fc); err != nil {
		return Config{}, err
	}

	cfg, err := fc.resolve(filepath.Dir(path))
	if err == nil {
		err = cfg.validate(true)
	}
	if err != nil {
		return Config{}, fmt.Errorf("mpsim: config %s: %w", path, err)
	}
	return cfg, nil
}

// resolve turns the file form into a Config, reading PEM files relative to
// dir and parsing organisation numbers. It reports every problem at once so
// a user fixing a config does not have to iterate.
func (fc *fileConfig) resolve(dir string) (Config, error) {
	cfg := Config{
		Issuer:        fc.Issuer,
		TokenLifetime: fc.TokenLifetime,
		ClockSkew:     fc.ClockSkew,
		ClockOffset:   fc.ClockOffset,
		Faults:        fc.Faults,

		KeyActivationDelay:    fc.KeyActivationDelay,
		RegisteredKeyLifetime: fc.RegisteredKeyLifetime,
	}
	var errs []error
	for _, p := range fc.TrustRoots {
		certs, err := readCertificates(resolvePath(dir, p))
		if err != nil {
			errs = append(errs, fmt.Errorf("trust_roots: %w", err))
		}
		cfg.TrustRoots = append(cfg.TrustRoots, certs...)
	}
	for i, fcl := range fc.Clients {
		name := fmt.Sprintf("client %d", i+1)
		if fcl.ClientID != "" {
			name = fmt.Sprintf("client %q", fcl.ClientID)
		}
		c := Client{ID: fcl.ClientID, Scopes: fcl.Scopes}
		n, err := orgno.Parse(fcl.OrgNumber)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: org_number: %w", name, err))
		}
		c.OrgNumber = n
		for _, k := range fcl.Keys {
			if c.Keys == nil {
				c.Keys = make(map[string]crypto.PublicKey, len(fcl.Keys))
			}
			if _, dup := c.Keys[k.KID]; dup {
				errs = append(errs, fmt.Errorf("%s: kid %q is listed more than once", name, k.KID))
				continue
			}
			if k.PublicKey == "" {
				errs = append(errs, fmt.Errorf("%s: key %q has no public_key file", name, k.KID))
				continue
			}
			pub, err := readPublicKey(resolvePath(dir, k.PublicKey))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: key %q: %w", name, k.KID, err))
				continue
			}
			c.Keys[k.KID] = pub
		}
		cfg.Clients = append(cfg.Clients, c)
	}
	for i, fd := range fc.Delegations {
		n, err := orgno.Parse(fd.ConsumerOrg)
		if err != nil {
			errs = append(errs, fmt.Errorf("delegation %d (supplier %q): consumer_org: %w", i+1, fd.SupplierClientID, err))
		}
		cfg.Delegations = append(cfg.Delegations, Delegation{
			ConsumerOrg: n, SupplierClientID: fd.SupplierClientID, Scopes: fd.Scopes,
		})
	}
	for i, fa := range fc.Access {
		n, err := orgno.Parse(fa.Org)
		if err != nil {
			errs = append(errs, fmt.Errorf("consumer_access %d: org: %w", i+1, err))
		}
		cfg.ConsumerAccess = append(cfg.ConsumerAccess, ConsumerAccess{Org: n, Scopes: fa.Scopes})
	}
	for i, fu := range fc.SystemUsers {
		n, err := orgno.Parse(fu.Customer)
		if err != nil {
			errs = append(errs, fmt.Errorf("system user %d (client %q): customer: %w", i+1, fu.ClientID, err))
		}
		cfg.SystemUsers = append(cfg.SystemUsers, SystemUser{
			ClientID: fu.ClientID, SystemID: fu.SystemID, Customer: n, ExternalRef: fu.ExternalRef, ID: fu.ID,
		})
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// readCertificates reads every CERTIFICATE block in a PEM file. Any other
// block is an error: a key or CSR there means the wrong file was named.
func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s holds a %q PEM block; trust roots must be CERTIFICATE blocks", path, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate in %s: %w", path, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s contains no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

// readPublicKey reads a public key from a PEM file holding a PUBLIC KEY
// (PKIX), an RSA PUBLIC KEY (PKCS #1) or a CERTIFICATE, whose key is taken.
func readPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s contains no PEM data; expected a PUBLIC KEY block", path)
	}
	var pub crypto.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("%s holds a %q PEM block; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s in %s: %w", block.Type, path, err)
	}
	return pub, nil
}
