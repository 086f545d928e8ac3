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
	"github.com/portvakt/portvakt/internal/strictyaml"
	"github.com/portvakt/portvakt/maskinporten"
)

var environmentName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Validate reports every problem at once, each a *strictyaml.Problem
// naming the file, the line of the field it is about (or of the nearest
// block around it, for a field left out) and what to do.
func (c *Config) Validate() error {
	v := validator{problems: strictyaml.List{File: c.source}, lines: c.lines}
	if v.problems.File == "" {
		v.problems.File = "configuration"
	}
	c.validateListen(&v)
	c.validateHSMs(&v)
	c.validateEnvironments(&v)
	v.require(c.Policy != "", "policy", "policy: missing; give the path of the policy file, such as policy: policy.yaml")
	if c.Policy != "" {
		v.fileExists("policy", c.Policy)
	}
	c.validateTuning(&v)
	c.validateGRPC(&v)
	v.require(c.Log.Format == "json" || c.Log.Format == "text", "log.format", fmt.Sprintf("log.format %q: unknown format; use json or text", c.Log.Format))
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", fmt.Sprintf("log.level %q: unknown level; use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Calls {
	case LogCallsErrors, LogCallsAll, LogCallsSample:
	default:
		v.add("log.calls", fmt.Sprintf("log.calls %q: unknown value; use errors, all or sample", c.Log.Calls))
	}
	v.require(c.Log.CallsSample >= 1, "log.calls_sample", fmt.Sprintf("log.calls_sample %d: give a whole number of 1 or more (log one successful call in that many)", c.Log.CallsSample))
	c.validateAudit(&v)
	if c.Metrics.Address != "" {
		v.address("metrics.address", c.Metrics.Address)
	}
	v.positive("certificates.warn_before", c.Certificates.WarnBefore)
	v.require(c.MemoryLimit >= MinMemoryLimit, "memory_limit", fmt.Sprintf("memory_limit %d: too small; give at least %d bytes (16 MiB), or leave it out for the default, %d (40 MiB)", c.MemoryLimit, MinMemoryLimit, DefaultMemoryLimit))
	return v.problems.Err()
}

func (c *Config) validateListen(v *validator) {
	if c.Listen.Unix == nil && c.Listen.TCP == nil {
		v.add("listen", "listen: no listener; give a unix socket (unix: {path: ...}), a tcp address (tcp: {address: ...}), or both")
	}
	if u := c.Listen.Unix; u != nil {
		v.require(u.Path != "", "listen.unix.path", "listen.unix.path: missing; give the socket's path, such as /run/portvakt/portvakt.sock")
		mode, err := strconv.ParseUint(u.Mode, 8, 32)
		switch {
		case err != nil || mode > 0o777:
			v.add("listen.unix.mode", fmt.Sprintf("listen.unix.mode %q: not a permission; give one in octal, such as \"0660\"", u.Mode))
		case mode&0o007 != 0:
			v.add("listen.unix.mode", fmt.Sprintf("listen.unix.mode %s lets every user of the machine connect; use 0660 and a group", u.Mode))
		}
	}
	if h := c.Listen.Health; h != nil {
		v.address("listen.health.address", h.Address)
	}
	if t := c.Listen.TCP; t != nil {
		host, _, err := net.SplitHostPort(t.Address)
		if err != nil {
			v.address("listen.tcp.address", t.Address)
		}
		if t.Insecure {
			ip := net.ParseIP(host)
			v.require(err != nil || host == "localhost" || (ip != nil && ip.IsLoopback()), "listen.tcp.insecure",
				fmt.Sprintf("listen.tcp.insecure is allowed only on a loopback address, not %q; listen on 127.0.0.1, or remove insecure and give cert_file, key_file and client_ca_file", t.Address))
			return
		}
		for _, f := range []struct{ key, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"client_ca_file", t.ClientCAFile}} {
			if f.path == "" {
				v.add("listen.tcp."+f.key, "listen.tcp."+f.key+" is required for mutual TLS; give the PEM file (or set insecure: true on a loopback address)")
				continue
			}
			v.fileExists("listen.tcp."+f.key, f.path)
		}
	}
}

func (c *Config) validateHSMs(v *validator) {
	switch {
	case c.HSM != nil && len(c.HSMs) > 0 && c.HSMs[0].field != "hsm":
		v.add("hsms", "hsm and hsms: give one HSM as hsm, or several as hsms, not both")
		return
	case len(c.HSMs) == 0:
		v.add("hsm", "hsm: missing; give the HSM holding the keys (module, token, pin), or several as hsms")
		return
	}
	names := map[string]bool{}
	tokens := map[string]string{}
	softhsmDir := ""
	for _, h := range c.HSMs {
		at, path := h.field, h.path
		v.uniqueName(at, path, h.Name, names)
		v.require(h.Token != "", path+".token", at+".token: missing; give the token label (the partition, on HSMs that have them)")
		v.require(!h.PIN.IsZero(), path+".pin", at+".pin: missing; give {file: PATH} or {env: VARIABLE}")
		v.require(h.PIN.File == "" || h.PIN.Env == "", path+".pin", at+".pin: give a file or an environment variable, not both")
		if h.PIN.File != "" {
			v.fileExists(path+".pin.file", h.PIN.File)
		}
		if h.Module != "" {
			v.fileExists(path+".module", h.Module)
		}
		if h.SoftHSMDir != "" {
			v.fileExists(path+".softhsm_dir", h.SoftHSMDir)
			if softhsmDir != "" && softhsmDir != h.SoftHSMDir {
				v.add(path+".softhsm_dir", fmt.Sprintf("%s.softhsm_dir: SoftHSM2 reads one configuration per process, and another HSM names %s; put the tokens in one directory", at, softhsmDir))
			}
			softhsmDir = h.SoftHSMDir
		}
		// One token object per (module, label): two names for one token
		// would open it twice and recover it twice.
		key := h.Module + "\x00" + h.Token
		if other, dup := tokens[key]; dup && h.Token != "" {
			v.add(path+".token", fmt.Sprintf("%s: token %q of this module is already configured as HSM %q; let the environments share that one", at, h.Token, other))
		}
		tokens[key] = h.Name
		v.require(h.MaxSessions >= 2, path+".max_sessions", at+".max_sessions must be at least 2 (one session holds the login); leave it out for the default, 4")
		v.positive(path+".session_wait", h.SessionWait, at+".session_wait")
		v.positive(path+".probe_interval", h.ProbeInterval, at+".probe_interval")
	}
}

func (c *Config) validateEnvironments(v *validator) {
	if len(c.Environments) == 0 {
		v.add("environments", "environments: none; configure at least one Maskinporten environment, such as - {name: test, preset: test, client_id: ..., key_label: ...}")
	}
	seen := map[string]bool{}
	for i, e := range c.Environments {
		at, path := c.EnvironmentField(i), fmt.Sprintf("environments[%d]", i)
		v.uniqueName(at, path, e.Name, seen)
		if _, err := e.Resolve(); err != nil {
			where := path
			switch {
			case e.Preset != "" && strings.Contains(err.Error(), e.Preset):
				where = path + ".preset"
			case e.Issuer != "" && strings.Contains(err.Error(), "issuer"):
				where = path + ".issuer"
			}
			v.add(where, fmt.Sprintf("%s: %v", at, err))
		}
		v.require(e.ClientID != "", path+".client_id", at+".client_id: missing; give the Maskinporten integration's client id")
		switch {
		case e.HSM == "" && len(c.HSMs) > 1:
			v.add(path, fmt.Sprintf("%s.hsm: %d HSMs are configured; say which holds this environment's key (%s)", at, len(c.HSMs), c.hsmNames()))
		case e.HSM != "" && c.HSMOf(e) == nil:
			v.add(path+".hsm", fmt.Sprintf("%s.hsm %q: no HSM has that name; use one of those configured: %s", at, e.HSM, c.hsmNames()))
		}
		v.require(e.KeyLabel != "" || e.KeyID != "", path, at+": no key; give key_label or key_id of the key on the token")
		v.hexID(path+".key_id", at+".key_id", e.KeyID)
		if s := e.Successor; s != nil {
			sp, sat := path+".successor", at+".successor"
			v.require(s.KeyLabel != "" || s.KeyID != "" || s.CertificateFile != "", sp, sat+": give key_label or key_id of the renewed certificate's key, or certificate_file for a renewal of the environment's own key")
			v.hexID(sp+".key_id", sat+".key_id", s.KeyID)
			if s.From != "" {
				_, err := time.Parse(time.RFC3339, s.From)
				v.require(err == nil, sp+".from", fmt.Sprintf("%s.from %q: give a time in RFC 3339, such as 2027-03-01T06:00:00+01:00", sat, s.From))
			}
			if s.CertificateFile != "" {
				v.fileExists(sp+".certificate_file", s.CertificateFile)
			}
			v.require(e.RegisteredKeyOnly() == false, sp, sat+": the environment signs with a registered key without a certificate; a successor certificate is for environments that send x5c")
		}
		v.hexID(path+".self_service.key_id", at+".self_service.key_id", e.SelfService.KeyID)
		validateRotation(v, at+".rotation", path+".rotation", e)
		switch e.GrantAlg {
		case "RS256", "RS384", "RS512":
		default:
			v.add(path+".grant_alg", fmt.Sprintf("%s.grant_alg %q: unknown algorithm; use RS256, RS384 or RS512", at, e.GrantAlg))
		}
		if e.CertificateFile != "" {
			v.fileExists(path+".certificate_file", e.CertificateFile)
		}
		validateKeyMode(v, at, path, e)
	}
}

// validateTuning checks cache and maskinporten: zero took the default, so
// only a negative value is wrong.
func (c *Config) validateTuning(v *validator) {
	b, m := c.Cache.Breaker, c.Maskinporten
	for _, f := range []struct {
		path string
		ok   bool
	}{
		{"cache.refresh_margin", c.Cache.RefreshMargin >= 0},
		{"cache.error_backoff", c.Cache.ErrorBackoff >= 0},
		{"cache.max_entries", c.Cache.MaxEntries >= 0},
		{"cache.breaker.threshold", b.Threshold >= 0},
		{"cache.breaker.cool_down", b.CoolDown >= 0},
		{"cache.breaker.max_cool_down", b.MaxCoolDown >= 0},
		{"maskinporten.request_timeout", m.RequestTimeout >= 0},
		{"maskinporten.max_attempts", m.MaxAttempts >= 0},
		{"maskinporten.retry_deadline", m.RetryDeadline >= 0},
		{"maskinporten.clock_threshold", m.ClockThreshold >= 0},
	} {
		v.require(f.ok, f.path, f.path+" must not be negative; leave it out for the default")
	}
	v.require(b.CoolDown <= 0 || b.MaxCoolDown <= 0 || b.CoolDown <= b.MaxCoolDown, "cache.breaker.cool_down",
		"cache.breaker: cool_down must not be longer than max_cool_down; shorten cool_down or lengthen max_cool_down")
}

func (c *Config) validateAudit(v *validator) {
	v.require(c.Audit.File != "", "audit.file", "audit.file: missing; give the audit log's path: Portvakt records every use of the key and does not run without an audit log")
	if err := audit.ValidInstance(c.Audit.Instance); err != nil {
		v.add("audit.instance", "audit.instance: "+err.Error()+" (the default is the host name; set audit.instance when it does not fit)")
	}
	v.require(c.Audit.MaxBytes >= 0, "audit.max_bytes", "audit.max_bytes must not be negative; leave it out for no size limit")
	v.require(c.Audit.MaxAge >= 0, "audit.max_age", "audit.max_age must not be negative; leave it out for no age limit")
	a := c.Audit.Seal
	if a == nil {
		return
	}
	switch {
	case a.HSM == "" && len(c.HSMs) > 1:
		v.add("audit.seal", fmt.Sprintf("audit.seal.hsm: %d HSMs are configured; say which holds the audit key (%s)", len(c.HSMs), c.hsmNames()))
	case a.HSM != "" && c.HSMNamed(a.HSM) == nil:
		v.add("audit.seal.hsm", fmt.Sprintf("audit.seal.hsm %q: no HSM has that name; use one of those configured: %s", a.HSM, c.hsmNames()))
	}
	v.hexID("audit.seal.key_id", "audit.seal.key_id", a.KeyID)
	v.positive("audit.seal.every", a.Every)
	for _, e := range c.Environments {
		v.require(e.HSM != a.HSM || e.KeyLabel != a.KeyLabel || a.KeyLabel == "", "audit.seal.key_label",
			fmt.Sprintf("audit.seal.key_label %q is environment %s's eSeal; the audit key must be a key of its own (`portvakt hsm keygen --label portvakt-audit`)", a.KeyLabel, e.Name))
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
	env.SelfServiceURL = presetOrNone(e.SelfService.URL, env.SelfServiceURL)
	if env.TokenEndpoint == "" && !e.Discovery {
		return env, errors.New("give a token_endpoint, or discovery: true to read it from the issuer's metadata")
	}
	env.Resource = presetOrNone(e.DefaultResource, env.Resource)
	return env, env.Validate()
}

// presetOrNone is a setting that may be left out (the preset's value),
// given, or "none" (no value at all).
func presetOrNone(configured, preset string) string {
	switch configured {
	case "":
		return preset
	case "none":
		return ""
	default:
		return configured
	}
}

// KeyIDBytes is the configured key id, decoded.
func (e Environment) KeyIDBytes() []byte { return HexID(e.KeyID) }

// HexID is a key id (CKA_ID) as the configuration gives it, in hex,
// decoded; nil for none. Validate has refused one that is not hex.
func HexID(id string) []byte {
	b, _ := hex.DecodeString(id)
	return b
}

// hexID refuses a key id that is not hex; "" (none given) is not checked.
func (v *validator) hexID(path, field, id string) {
	if id == "" {
		return
	}
	_, err := hex.DecodeString(id)
	v.require(err == nil, path, fmt.Sprintf("%s %q is not hex; give the CKA_ID as hex digits, such as 01a2 (`portvakt hsm list` shows it)", field, id))
}

// validator collects Validate's problems, each at the line of the field
// it names.
type validator struct {
	problems strictyaml.List
	lines    strictyaml.Lines
}

// add records a problem about the field at path, as it is written in the
// file (hsms[1].token): the message gets its line, or the line of the
// nearest block around it when the field was left out.
func (v *validator) add(path, problem string) {
	v.problems.Add(v.lines.Of(path), errors.New(problem))
}

func (v *validator) require(ok bool, path, problem string) {
	if !ok {
		v.add(path, problem)
	}
}

// positive checks a duration that must be above zero; named is how the
// message names it, when not as its path.
func (v *validator) positive(path string, d time.Duration, named ...string) {
	name := path
	if len(named) > 0 {
		name = named[0]
	}
	v.require(d > 0, path, fmt.Sprintf("%s must be positive; leave it out for the default", name))
}

// address checks a host:port.
func (v *validator) address(path, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		v.add(path, fmt.Sprintf("%s %q: not an address; use host:port, such as 127.0.0.1:9464", path, addr))
	}
}

// uniqueName checks a name that others refer to (an environment's, an
// HSM's): lower-case letters, digits and dashes, and not used twice.
func (v *validator) uniqueName(at, path, name string, seen map[string]bool) {
	switch {
	case !environmentName.MatchString(name):
		v.add(path+".name", fmt.Sprintf("%s.name %q: use lower-case letters, digits and dashes", at, name))
	case seen[name]:
		v.add(path+".name", fmt.Sprintf("%s.name: %q is configured twice; give each its own name", at, name))
	}
	seen[name] = true
}

func (v *validator) fileExists(path, file string) {
	if _, err := os.Stat(file); err != nil {
		v.add(path, fmt.Sprintf("%s: %v; give an existing file (a relative path is read from the configuration's directory)", path, err))
	}
}

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
		v.require(d.ok, "grpc."+d.key, fmt.Sprintf("grpc.%s must be positive; leave it out for the default", d.key))
	}
	v.require(g.KeepaliveTime <= 0 || g.KeepaliveTime >= time.Second, "grpc.keepalive_time", fmt.Sprintf("grpc.keepalive_time %s: too short; give at least 1s (gRPC pings no more often)", g.KeepaliveTime))
	v.require(int64(g.MaxConcurrentStreams) <= math.MaxUint32, "grpc.max_concurrent_streams", fmt.Sprintf("grpc.max_concurrent_streams %d: too large; give at most %d (an HTTP/2 setting is 32 bits)", g.MaxConcurrentStreams, uint32(math.MaxUint32)))
}

// rotationStampLength is the time stamp a rotated key's label ends in,
// with its hyphen: -20270301T060000Z.
const rotationStampLength = 17

// maxKeyLabel is the longest key label Portvakt makes.
const maxKeyLabel = 32

func validateRotation(v *validator, at, path string, e Environment) {
	r := e.Rotation
	if r == nil {
		return
	}
	v.require(e.KeyIDHeader != "" && !e.KeyIDWithX5C, path, at+": rotation replaces a registered key sent by kid alone; set the environment's kid (and not kid_with_x5c), or remove rotation")
	v.require(e.SelfService.URL != "none", path, at+": rotation needs the self-service API; remove self_service.url: none")
	v.require(e.KeyLabel != "", path, at+": rotation names keys by label: give the environment's key_label")
	v.require(r.Bits == 2048 || r.Bits == 3072, path+".bits", fmt.Sprintf("%s.bits %d: give 2048 or 3072", at, r.Bits))
	v.require(len(r.KeyLabelPrefix)+rotationStampLength <= maxKeyLabel, path+".key_label_prefix",
		fmt.Sprintf("%s.key_label_prefix %q: at most %d characters, so that the labels made (the prefix and -20270301T060000Z) fit in %d", at, r.KeyLabelPrefix, maxKeyLabel-rotationStampLength, maxKeyLabel))
	v.require(!strings.ContainsAny(r.ProbeScope, " \t"), path+".probe_scope", at+".probe_scope: one scope, without spaces")
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"lead_time", r.LeadTime}, {"probe_interval", r.ProbeInterval}, {"delete_after", r.DeleteAfter}, {"max_token_lifetime", r.MaxTokenLifetime}} {
		v.require(f.d > 0, path+"."+f.name, fmt.Sprintf("%s.%s must be positive; leave it out for the default", at, f.name))
	}
	v.require(r.LeadTime < 365*24*time.Hour, path+".lead_time", at+".lead_time: a registered key lives a year; give a lead time shorter than that, such as 30d")
}
