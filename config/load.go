package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portvakt/portvakt/internal/strictyaml"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/selfservice"
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
		return nil, err
	}
	return cfg, nil
}

// empty is what an empty configuration is told.
const empty = "the configuration is empty; give at least listen, hsm, environments, policy and audit (docs/configuration.md has every key, deploy/examples/production.yaml an example)"

// Parse decodes a configuration strictly and applies the defaults; name
// (the file) starts every message. It reports every problem of the file's
// shape at once (syntax, unknown keys, values of the wrong kind, durations
// that do not read), each a *strictyaml.Problem: NAME:LINE: what is wrong;
// what to do. It does not check the values against each other: Validate
// does, and its messages find their lines through what Parse recorded.
func Parse(name string, data []byte) (*Config, error) {
	problems := &strictyaml.List{File: name}
	cfg := &Config{}
	switch root := problems.Document(data); {
	case root == nil && problems.Len() == 0, root != nil && root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null":
		problems.Addf(1, "%s", empty)
	case root != nil:
		cfg.lines = problems.Walk(root, cfg)
	}
	if err := problems.Err(); err != nil {
		return nil, err
	}
	cfg.source = name
	cfg.setDefaults()
	return cfg, nil
}

func (c *Config) setDefaults() {
	if c.Listen.Unix != nil && c.Listen.Unix.Mode == "" {
		c.Listen.Unix.Mode = "0660"
	}
	if c.HSM != nil && len(c.HSMs) == 0 {
		one := *c.HSM
		if one.Name == "" {
			one.Name = DefaultHSM
		}
		one.field, one.path = "hsm", "hsm"
		c.HSMs = []HSM{one}
	}
	for i := range c.HSMs {
		h := &c.HSMs[i]
		if h.field == "" {
			h.path = fmt.Sprintf("hsms[%d]", i)
			h.field = h.path
			if h.Name != "" {
				h.field += " (" + h.Name + ")"
			}
		}
		if h.MaxSessions == 0 {
			h.MaxSessions = 4
		}
		if h.SessionWait == 0 {
			h.SessionWait = 5 * time.Second
		}
		if h.ProbeInterval == 0 {
			h.ProbeInterval = 5 * time.Second
		}
	}
	if c.Audit.Instance == "" {
		c.Audit.Instance, _ = os.Hostname() // "" on failure: Validate says to set it
	}
	c.Audit.File = strings.ReplaceAll(c.Audit.File, "{instance}", c.Audit.Instance)
	if a := c.Audit.Seal; a != nil {
		if a.KeyLabel == "" && a.KeyID == "" {
			a.KeyLabel = DefaultAuditKeyLabel
		}
		if a.EveryRecords == 0 {
			a.EveryRecords = 10000
		}
		if a.Every == 0 {
			a.Every = 10 * time.Second
		}
	}
	for i := range c.Environments {
		if r := c.Environments[i].Rotation; r != nil {
			r.setDefaults(c.Environments[i].Name)
		}
	}
	if c.MemoryLimit == 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	if c.GRPC.MaxRecvBytes == 0 {
		c.GRPC.MaxRecvBytes = 64 << 10
	}
	if c.GRPC.ShutdownGrace == 0 {
		c.GRPC.ShutdownGrace = 15 * time.Second
	}
	if c.GRPC.MaxConnections == 0 {
		c.GRPC.MaxConnections = 1024
	}
	if c.GRPC.MaxConnectionIdle == 0 {
		c.GRPC.MaxConnectionIdle = 5 * time.Minute
	}
	if c.GRPC.MaxConcurrentStreams == 0 {
		c.GRPC.MaxConcurrentStreams = 100
	}
	if c.GRPC.KeepaliveTime == 0 {
		c.GRPC.KeepaliveTime = time.Minute
	}
	if c.GRPC.KeepaliveTimeout == 0 {
		c.GRPC.KeepaliveTimeout = 20 * time.Second
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Calls == "" {
		c.Log.Calls = LogCallsErrors
	}
	if c.Log.CallsSample == 0 {
		c.Log.CallsSample = 100
	}
	if c.Maskinporten.ClockThreshold == 0 {
		c.Maskinporten.ClockThreshold = maskinporten.DefaultClockThreshold
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

// DefaultAuditKeyLabel is the label of the audit key when audit.seal
// names none.
const DefaultAuditKeyLabel = "portvakt-audit"

// DefaultHSM is the name of the HSM of a configuration's single hsm block.
const DefaultHSM = "default"

// HSMNamed returns the HSM called name, or the only one for "".
func (c *Config) HSMNamed(name string) *HSM {
	for i := range c.HSMs {
		if c.HSMs[i].Name == name || (name == "" && len(c.HSMs) == 1) {
			return &c.HSMs[i]
		}
	}
	return nil
}

// HSMOf returns the HSM holding environment e's key: the one it names, or
// the only one. Validate has checked that there is one.
func (c *Config) HSMOf(e Environment) *HSM { return c.HSMNamed(e.HSM) }

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
	for i := range c.HSMs {
		abs(&c.HSMs[i].SoftHSMDir)
		abs(&c.HSMs[i].PIN.File)
	}
	abs(&c.Policy)
	abs(&c.Audit.File)
	for i := range c.Environments {
		abs(&c.Environments[i].CertificateFile)
		abs(&c.Environments[i].PublicKeyFile)
		if s := c.Environments[i].Successor; s != nil {
			abs(&s.CertificateFile)
		}
	}
}

func (r *Rotation) setDefaults(env string) {
	if r.LeadTime == 0 {
		r.LeadTime = 30 * 24 * time.Hour
	}
	if r.KeyLabelPrefix == "" {
		r.KeyLabelPrefix = "portvakt-" + env
	}
	if r.Bits == 0 {
		r.Bits = selfservice.DefaultKeyBits
	}
	if r.ProbeScope == "" {
		r.ProbeScope = "idporten:dcr.read"
	}
	if r.ProbeInterval == 0 {
		r.ProbeInterval = 10 * time.Second
	}
	if r.DeleteAfter == 0 {
		r.DeleteAfter = 7 * 24 * time.Hour
	}
	if r.MaxTokenLifetime == 0 {
		r.MaxTokenLifetime = time.Hour
	}
}
