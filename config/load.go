package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/portvakt/portvakt/internal/strictyaml"
)

// Load reads, completes and checks the configuration. Relative paths in it
// are taken from the file's directory, so a configuration and its files
// can move together.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(filepath.Dir(path))
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes a configuration strictly and applies the defaults; name is
// used in messages. It does not check the values: Validate does.
func Parse(name string, data []byte) (*Config, error) {
	var cfg Config
	if err := strictyaml.Decode("configuration "+name, data, &cfg); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &cfg, nil
}

func (c *Config) setDefaults() {
	if c.Listen.Unix != nil && c.Listen.Unix.Mode == "" {
		c.Listen.Unix.Mode = "0660"
	}
	if c.HSM.MaxSessions == 0 {
		c.HSM.MaxSessions = 4
	}
	if c.GRPC.MaxRecvBytes == 0 {
		c.GRPC.MaxRecvBytes = 64 << 10
	}
	if c.GRPC.ShutdownGrace == 0 {
		c.GRPC.ShutdownGrace = 15 * time.Second
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Certificates.WarnBefore == 0 {
		c.Certificates.WarnBefore = 30 * 24 * time.Hour
	}
	for i := range c.Environments {
		if c.Environments[i].GrantAlg == "" {
			c.Environments[i].GrantAlg = "RS256"
		}
	}
}

// resolvePaths makes the file paths in the configuration absolute.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if u := c.Listen.Unix; u != nil {
		abs(&u.Path)
	}
	if t := c.Listen.TCP; t != nil {
		abs(&t.CertFile)
		abs(&t.KeyFile)
		abs(&t.ClientCAFile)
	}
	abs(&c.HSM.SoftHSMDir)
	abs(&c.HSM.PIN.File)
	abs(&c.Policy)
	abs(&c.Audit.File)
	for i := range c.Environments {
		abs(&c.Environments[i].CertificateFile)
	}
}
