package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/maskinporten"
)

var environmentName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Validate reports every problem at once, each naming its field.
func (c *Config) Validate() error {
	var v validator
	c.validateListen(&v)
	c.validateHSMs(&v)
	c.validateEnvironments(&v)
	v.require(c.Policy != "", "policy: give the path of the policy file")
	if c.Policy != "" {
		v.fileExists("policy", c.Policy)
	}
	v.require(c.Cache.RefreshMargin >= 0 && c.Cache.ErrorBackoff >= 0 && c.Cache.MaxEntries >= 0, "cache: values must not be negative")
	b := c.Cache.Breaker
	v.require(b.Threshold >= 0 && b.CoolDown >= 0 && b.MaxCoolDown >= 0, "cache.breaker: values must not be negative")
	v.require(b.CoolDown == 0 || b.MaxCoolDown == 0 || b.CoolDown <= b.MaxCoolDown, "cache.breaker: cool_down must not be longer than max_cool_down")
	v.require(c.Maskinporten.RequestTimeout >= 0 && c.Maskinporten.MaxAttempts >= 0 && c.Maskinporten.RetryDeadline >= 0, "maskinporten: values must not be negative")
	v.require(c.Maskinporten.ClockThreshold >= 0, fmt.Sprintf("maskinporten.clock_threshold %s must not be negative", c.Maskinporten.ClockThreshold))
	c.validateGRPC(&v)
	v.require(c.Log.Format == "json" || c.Log.Format == "text", fmt.Sprintf("log.format %q: use json or text", c.Log.Format))
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add(fmt.Sprintf("log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	v.require(c.Audit.File != "", "audit.file: give the audit log's path: Portvakt records every use of the key and does not run without an audit log")
	if err := audit.ValidInstance(c.Audit.Instance); err != nil {
		v.add("audit.instance: " + err.Error() + " (the default is the host name; set audit.instance when it does not fit)")
	}
	v.require(c.Audit.MaxBytes >= 0 && c.Audit.MaxAge >= 0, "audit: rotation limits must not be negative")
	if a := c.Audit.Seal; a != nil {
		switch {
		case a.HSM == "" && len(c.HSMs) > 1:
			v.add(fmt.Sprintf("audit.seal.hsm: %d HSMs are configured; say which holds the audit key (%s)", len(c.HSMs), c.hsmNames()))
		case a.HSM != "" && c.HSMNamed(a.HSM) == nil:
			v.add(fmt.Sprintf("audit.seal.hsm %q: no HSM has that name (configured: %s)", a.HSM, c.hsmNames()))
		}
		if a.KeyID != "" {
			_, err := hex.DecodeString(a.KeyID)
			v.require(err == nil, fmt.Sprintf("audit.seal.key_id %q is not hex", a.KeyID))
		}
		v.require(a.Every > 0, "audit.seal.every must be positive")
		for _, e := range c.Environments {
			v.require(e.HSM != a.HSM || e.KeyLabel != a.KeyLabel || a.KeyLabel == "",
				fmt.Sprintf("audit.seal.key_label %q is environment %s's eSeal; the audit key must be a key of its own", a.KeyLabel, e.Name))
		}
	}
	if c.Metrics.Address != "" {
		_, _, err := net.SplitHostPort(c.Metrics.Address)
		v.require(err == nil, fmt.Sprintf("metrics.address %q: use host:port", c.Metrics.Address))
	}
	v.require(c.Certificates.WarnBefore > 0, "certificates.warn_before must be positive")
	return v.err()
}

func (c *Config) validateListen(v *validator) {
	if c.Listen.Unix == nil && c.Listen.TCP == nil {
		v.add("listen: give a unix socket, a tcp address, or both")
	}
	if u := c.Listen.Unix; u != nil {
		v.require(u.Path != "", "listen.unix.path is empty")
		mode, err := strconv.ParseUint(u.Mode, 8, 32)
		v.require(err == nil && mode <= 0o777, fmt.Sprintf("listen.unix.mode %q: give an octal permission such as 0660", u.Mode))
		v.require(mode&0o007 == 0, fmt.Sprintf("listen.unix.mode %s lets every user of the machine connect; use 0660 and a group", u.Mode))
	}
	if h := c.Listen.Health; h != nil {
		_, _, err := net.SplitHostPort(h.Address)
		v.require(err == nil, fmt.Sprintf("listen.health.address %q: use host:port", h.Address))
	}
	if t := c.Listen.TCP; t != nil {
		host, _, err := net.SplitHostPort(t.Address)
		if err != nil {
			v.add(fmt.Sprintf("listen.tcp.address %q: use host:port", t.Address))
		}
		if t.Insecure {
			ip := net.ParseIP(host)
			v.require(host == "localhost" || (ip != nil && ip.IsLoopback()),
				fmt.Sprintf("listen.tcp.insecure is allowed only on a loopback address, not %q", t.Address))
			return
		}
		for field, path := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile, "client_ca_file": t.ClientCAFile} {
			if path == "" {
				v.add("listen.tcp." + field + " is required for mutual TLS (or set insecure: true on a loopback address)")
				continue
			}
			v.fileExists("listen.tcp."+field, path)
		}
	}
}

func (c *Config) validateHSMs(v *validator) {
	switch {
	case c.HSM != nil && len(c.HSMs) > 0 && c.HSMs[0].field != "hsm":
		v.add("hsm and hsms: give one HSM as hsm, or several as hsms, not both")
		return
	case len(c.HSMs) == 0:
		v.add("hsm: give the HSM holding the keys (module, token, pin), or several as hsms")
		return
	}
	names := map[string]bool{}
	tokens := map[string]string{}
	softhsmDir := ""
	for _, h := range c.HSMs {
		at := h.field
		v.uniqueName(at, h.Name, names)
		v.require(h.Token != "", at+".token: give the token label")
		v.require(!h.PIN.IsZero(), at+".pin: give {file: PATH} or {env: VARIABLE}")
		v.require(h.PIN.File == "" || h.PIN.Env == "", at+".pin: give a file or an environment variable, not both")
		if h.PIN.File != "" {
			v.fileExists(at+".pin.file", h.PIN.File)
		}
		if h.Module != "" {
			v.fileExists(at+".module", h.Module)
		}
		if h.SoftHSMDir != "" {
			v.fileExists(at+".softhsm_dir", h.SoftHSMDir)
			if softhsmDir != "" && softhsmDir != h.SoftHSMDir {
				v.add(fmt.Sprintf("%s.softhsm_dir: SoftHSM2 reads one configuration per process, and another HSM names %s; put the tokens in one directory", at, softhsmDir))
			}
			softhsmDir = h.SoftHSMDir
		}
		// One token object per (module, label): two names for one token
		// would open it twice and recover it twice.
		key := h.Module + "\x00" + h.Token
		if other, dup := tokens[key]; dup && h.Token != "" {
			v.add(fmt.Sprintf("%s: token %q of this module is already configured as HSM %q; let the environments share that one", at, h.Token, other))
		}
		tokens[key] = h.Name
		v.require(h.MaxSessions >= 2, at+".max_sessions must be at least 2 (one session holds the login)")
		v.require(h.SessionWait > 0, at+".session_wait must be positive")
		v.require(h.ProbeInterval > 0, at+".probe_interval must be positive")
	}
}

func (c *Config) validateEnvironments(v *validator) {
	if len(c.Environments) == 0 {
		v.add("environments: configure at least one Maskinporten environment")
	}
	seen := map[string]bool{}
	for i, e := range c.Environments {
		at := c.EnvironmentField(i)
		v.uniqueName(at, e.Name, seen)
		if _, err := e.Resolve(); err != nil {
			v.add(fmt.Sprintf("%s: %v", at, err))
		}
		v.require(e.ClientID != "", at+".client_id: give the Maskinporten integration's client id")
		switch {
		case e.HSM == "" && len(c.HSMs) > 1:
			v.add(fmt.Sprintf("%s.hsm: %d HSMs are configured; say which holds this environment's key (%s)", at, len(c.HSMs), c.hsmNames()))
		case e.HSM != "" && c.HSMOf(e) == nil:
			v.add(fmt.Sprintf("%s.hsm %q: no HSM has that name (configured: %s)", at, e.HSM, c.hsmNames()))
		}
		v.require(e.KeyLabel != "" || e.KeyID != "", at+": give key_label or key_id")
		if e.KeyID != "" {
			_, err := hex.DecodeString(e.KeyID)
			v.require(err == nil, fmt.Sprintf("%s.key_id %q is not hex", at, e.KeyID))
		}
		switch e.GrantAlg {
		case "RS256", "RS384", "RS512":
		default:
			v.add(fmt.Sprintf("%s.grant_alg %q: use RS256, RS384 or RS512", at, e.GrantAlg))
		}
		if e.CertificateFile != "" {
			v.fileExists(at+".certificate_file", e.CertificateFile)
		}
		validateKeyMode(v, at, e)
	}
}

func (c *Config) hsmNames() string {
	names := make([]string, len(c.HSMs))
	for i, h := range c.HSMs {
		names[i] = h.Name
	}
	return strings.Join(names, ", ")
}

// Resolve turns the configured environment into the protocol's.
func (e Environment) Resolve() (maskinporten.Environment, error) {
	var env maskinporten.Environment
	if e.Preset != "" {
		p, err := maskinporten.Preset(e.Preset)
		if err != nil {
			return env, err
		}
		env = p
	} else if e.Issuer == "" {
		return env, errors.New("give a preset (prod, test, ver2) or an issuer")
	}
	env.Name = e.Name
	if e.Issuer != "" {
		env.Issuer = e.Issuer
	}
	if e.TokenEndpoint != "" {
		env.TokenEndpoint = e.TokenEndpoint
	}
	if env.TokenEndpoint == "" && !e.Discovery {
		return env, errors.New("give a token_endpoint, or discovery: true to read it from the issuer's metadata")
	}
	switch e.DefaultResource {
	case "":
	case "none":
		env.Resource = ""
	default:
		env.Resource = e.DefaultResource
	}
	return env, env.Validate()
}

// KeyIDBytes is the configured key id, decoded.
func (e Environment) KeyIDBytes() []byte {
	id, _ := hex.DecodeString(e.KeyID)
	return id
}

type validator struct{ problems []error }

func (v *validator) add(problem string) { v.problems = append(v.problems, errors.New(problem)) }

func (v *validator) require(ok bool, problem string) {
	if !ok {
		v.add(problem)
	}
}

// uniqueName checks a name that others refer to (an environment's, an
// HSM's): lower-case letters, digits and dashes, and not used twice.
func (v *validator) uniqueName(at, name string, seen map[string]bool) {
	switch {
	case !environmentName.MatchString(name):
		v.add(fmt.Sprintf("%s.name %q: use lower-case letters, digits and dashes", at, name))
	case seen[name]:
		v.add(fmt.Sprintf("%s.name: %q is configured twice", at, name))
	}
	seen[name] = true
}

func (v *validator) fileExists(field, path string) {
	if _, err := os.Stat(path); err != nil {
		v.add(fmt.Sprintf("%s: %v", field, err))
	}
}

func (v *validator) err() error { return errors.Join(v.problems...) }

// validateGRPC checks the server's settings; zero took the default, so
// only a negative one (or one past what HTTP/2 can carry) is wrong.
func (c *Config) validateGRPC(v *validator) {
	g := c.GRPC
	for _, d := range []struct {
		key string
		ok  bool
	}{
		{"max_recv_bytes", g.MaxRecvBytes > 0},
		{"shutdown_grace", g.ShutdownGrace > 0},
		{"max_connections", g.MaxConnections > 0},
		{"max_connection_idle", g.MaxConnectionIdle > 0},
		{"max_concurrent_streams", g.MaxConcurrentStreams > 0},
		{"keepalive_time", g.KeepaliveTime > 0},
		{"keepalive_timeout", g.KeepaliveTimeout > 0},
	} {
		v.require(d.ok, fmt.Sprintf("grpc.%s must be positive (leave it out for the default)", d.key))
	}
	v.require(g.KeepaliveTime <= 0 || g.KeepaliveTime >= time.Second, fmt.Sprintf("grpc.keepalive_time %s: at least 1s (gRPC pings no more often)", g.KeepaliveTime))
	v.require(int64(g.MaxConcurrentStreams) <= math.MaxUint32, fmt.Sprintf("grpc.max_concurrent_streams %d: at most %d (an HTTP/2 setting is 32 bits)", g.MaxConcurrentStreams, uint32(math.MaxUint32)))
}
