// Package config reads the daemon's configuration: one YAML file, decoded
// strictly (an unknown key is an error naming its line), with every value
// checked before the daemon starts, so that a mistake is reported at start
// in one line rather than found by the first caller.
package config

import (
	"time"

	"github.com/portvakt/portvakt/internal/strictyaml"
	"github.com/portvakt/portvakt/secret"
)

// Config is the daemon's configuration.
type Config struct {
	Listen Listen `yaml:"listen"`
	// HSM is the one HSM, in the common case; HSMs names several. One of
	// the two is given. After Parse, HSMs holds the HSMs either way.
	HSM          *HSM             `yaml:"hsm" expect:"a mapping such as {module: PATH, token: LABEL, pin: {file: PATH}}"`
	HSMs         []HSM            `yaml:"hsms" expect:"a list of HSMs, such as - {name: prod-hsm, token: LABEL, pin: {file: PATH}}"`
	Environments []Environment    `yaml:"environments" expect:"a list of environments, such as - {name: test, preset: test, client_id: ID, key_label: LABEL}"`
	Policy       string           `yaml:"policy"`
	Cache        Cache            `yaml:"cache"`
	Maskinporten Maskinporten     `yaml:"maskinporten"`
	GRPC         GRPC             `yaml:"grpc"`
	Log          Log              `yaml:"log"`
	Audit        Audit            `yaml:"audit"`
	Metrics      Metrics          `yaml:"metrics"`
	Certificates CertificateWatch `yaml:"certificates"`
	// MemoryLimit is the Go runtime's soft memory limit in bytes
	// (debug.SetMemoryLimit): the garbage collector works harder as the
	// daemon's memory nears it, rather than letting the heap double under
	// a burst of callers. The GOMEMLIMIT environment variable, when set,
	// wins. Default DefaultMemoryLimit; at least MinMemoryLimit.
	MemoryLimit int64 `yaml:"memory_limit"`

	// source and lines are where the configuration was read from, for
	// Validate's messages: the file's name, and each field's line.
	source string
	lines  strictyaml.Lines
}

// The daemon's soft memory limit when memory_limit says nothing, and the
// least it may say: far below what the daemon holds at rest (some 10 MiB
// of Go memory) the collector would run without pause.
const (
	DefaultMemoryLimit = 40 << 20
	MinMemoryLimit     = 16 << 20
)

// Listen says where callers reach the daemon. At least one of Unix and
// TCP must be set.
type Listen struct {
	Unix *UnixListener `yaml:"unix"`
	TCP  *TCPListener  `yaml:"tcp"`
	// Health, when set, serves the gRPC health service alone, plaintext
	// and without client identity, for probes (Kubernetes grpc probes,
	// load balancers) that have no client certificate.
	Health *HealthListener `yaml:"health"`
}

// HealthListener is a plaintext TCP port serving only grpc.health.v1:
// no token, no reflection.
type HealthListener struct {
	Address string `yaml:"address"`
}

// UnixListener is a Unix socket; callers are identified by SO_PEERCRED.
type UnixListener struct {
	Path string `yaml:"path"`
	// Mode is the socket file's permission, octal. Default "0660": the
	// owner and the group may connect.
	Mode string `yaml:"mode"`
	// Group, a group name or a numeric gid, is given the socket at its
	// creation, so that callers are chosen by membership in it (such as
	// portvakt-clients). The daemon must be a member (systemd:
	// SupplementaryGroups=). Default: the daemon's own group.
	Group string `yaml:"group"`
}

// TCPListener is a TCP port; callers are identified by their client
// certificate (mutual TLS), unless Insecure.
type TCPListener struct {
	Address string `yaml:"address"`
	// CertFile and KeyFile are the daemon's server certificate and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the CAs whose client certificates are accepted.
	ClientCAFile string `yaml:"client_ca_file"`
	// Insecure serves plaintext without client identity, for local
	// debugging only; it is refused on anything but a loopback address.
	Insecure bool `yaml:"insecure"`
}

// HSM says which PKCS#11 module and token hold keys: one token of one
// module (a partition, for HSMs that have them).
type HSM struct {
	// Name is what environments call the HSM (their hsm key). The single
	// hsm block is named "default".
	Name string `yaml:"name"`
	// Module is the PKCS#11 library. Default: the installed SoftHSM2.
	Module string `yaml:"module"`
	// SoftHSMDir, for SoftHSM2 only, is a directory made by
	// `portvakt hsm init`; it sets SOFTHSM2_CONF.
	SoftHSMDir string `yaml:"softhsm_dir"`
	// Token is the token's label.
	Token string `yaml:"token"`
	// PIN is where the user PIN is read from: a file or an environment
	// variable, never the configuration itself.
	PIN secret.Source `yaml:"pin"`
	// MaxSessions bounds the PKCS#11 sessions the daemon opens on the
	// token, for all its keys together (one holds the login). Default 4.
	MaxSessions int `yaml:"max_sessions"`
	// SessionWait bounds how long a signature waits for a session when all
	// are busy or the HSM is out of them; then the caller gets UNAVAILABLE.
	// Default 5 s.
	SessionWait time.Duration `yaml:"session_wait"`
	// ProbeInterval is how often the token is asked whether it is still
	// there, so that an outage shows in health without traffic; while it
	// is away, reconnection is tried at least this often. Default 5 s.
	ProbeInterval time.Duration `yaml:"probe_interval"`

	// field is how messages name this block: "hsm" or "hsms[i] (name)";
	// path is where it is in the file, "hsm" or "hsms[i]".
	field, path string
}

// Environment is a Maskinporten environment the daemon serves tokens for.
type Environment struct {
	// Name is what callers ask for ("test", "prod").
	Name string `yaml:"name"`
	// Preset is prod, test or ver2 (retired in June 2024: it loads, with a
	// warning); or leave it out and give Issuer and TokenEndpoint.
	Preset        string `yaml:"preset"`
	Issuer        string `yaml:"issuer"`
	TokenEndpoint string `yaml:"token_endpoint"`
	// Discovery reads the token endpoint from the issuer's metadata; the
	// configured or preset endpoint stands in when it cannot be fetched.
	Discovery bool `yaml:"discovery"`
	// HSM names the HSM (hsms[].name) holding the environment's key; it may
	// be left out when only one HSM is configured.
	HSM string `yaml:"hsm"`
	// ClientID is the Maskinporten integration's id.
	ClientID string `yaml:"client_id"`
	// KeyLabel and KeyID (hex) select the key on the token.
	KeyLabel string `yaml:"key_label"`
	KeyID    string `yaml:"key_id"`
	// CertificateFile is a PEM chain; default: the token's certificates.
	CertificateFile string `yaml:"certificate_file"`
	// DefaultResource is asked for when a request names none. Default: the
	// preset's SVV resource; "none" asks for no resource.
	DefaultResource string `yaml:"default_resource"`
	// GrantAlg is RS256 (default), RS384 or RS512.
	GrantAlg string `yaml:"grant_alg"`
	// KeyIDHeader, when set, sends this kid instead of x5c (a key
	// pre-registered on the integration). The key then needs no
	// certificate: none is read, and certificate_file is refused.
	KeyIDHeader string `yaml:"kid"`
	// KeyIDWithX5C, with kid, sends the certificate chain in x5c beside
	// the kid, which pins the registered key to the enterprise certificate
	// (Maskinporten then checks it too). The key's certificate is read as
	// without kid.
	KeyIDWithX5C bool `yaml:"kid_with_x5c"`
	// Successor is a renewed enterprise certificate, imported ahead of
	// time, that takes over signing from the environment's at its From
	// or when the current certificate expires, whichever comes first.
	Successor *Successor `yaml:"successor"`
	// SelfService is how the daemon reaches Digdir's self-service API
	// for the integration's registered keys.
	SelfService SelfService `yaml:"self_service"`
	// Rotation replaces the registered key (kid) with a new one made in
	// the HSM, through the self-service API, without a failed call.
	Rotation *Rotation `yaml:"rotation"`
	// PublicKeyFile, with kid, is a PEM file holding the public key
	// registered for the kid at Digdir; the daemon refuses to start when the
	// HSM key is not its private half.
	PublicKeyFile string `yaml:"public_key_file"`
}

// Successor is an environment's renewed certificate and its key.
type Successor struct {
	// KeyLabel and KeyID (hex) select the renewed certificate's key on
	// the environment's HSM. Default: the environment's own key (a
	// renewal for the same key, with CertificateFile).
	KeyLabel string `yaml:"key_label"`
	KeyID    string `yaml:"key_id"`
	// CertificateFile is the renewed certificate and its chain (PEM).
	// Default: the certificates stored on the token for that key.
	CertificateFile string `yaml:"certificate_file"`
	// From is when it takes over (RFC 3339, such as
	// 2027-03-01T06:00:00+01:00). Default: when the current certificate
	// expires.
	From string `yaml:"from"`
}

// FromTime is From parsed; zero when not given (validated).
func (s Successor) FromTime() time.Time {
	t, _ := time.Parse(time.RFC3339, s.From)
	return t
}

// KeyIDBytes is the configured key id, decoded.
func (s Successor) KeyIDBytes() []byte { return HexID(s.KeyID) }

// SelfService is an environment's access to Digdir's self-service API.
type SelfService struct {
	// URL is the API. Default: the preset's; "none" for no API.
	URL string `yaml:"url"`
	// KeyLabel and KeyID (hex) select the enterprise certificate's key,
	// on the environment's HSM, that signs the grants of the API's tokens:
	// the API takes only tokens got with an enterprise certificate (x5c).
	// Default: the environment's own key, when it has a certificate.
	KeyLabel string `yaml:"key_label"`
	KeyID    string `yaml:"key_id"`
}

// KeyIDBytes is the configured key id, decoded.
func (s SelfService) KeyIDBytes() []byte { return HexID(s.KeyID) }

// Rotation is an environment's registered-key rotation. Zero values take
// the defaults given.
type Rotation struct {
	// Auto begins a rotation by itself LeadTime before the current key's
	// registration expires; without it only `portvakt keys rotate` does.
	Auto bool `yaml:"auto"`
	// LeadTime: default 30 days.
	LeadTime time.Duration `yaml:"lead_time"`
	// KeyLabelPrefix begins the labels of the keys made (a UTC time
	// stamp ends them). Default "portvakt-" and the environment's name.
	KeyLabelPrefix string `yaml:"key_label_prefix"`
	// Bits of the keys made: 2048 (the default: the size Digdir documents
	// for registered keys) or 3072.
	Bits int `yaml:"bits"`
	// ProbeScope is the scope of the probe grants that find out when
	// Maskinporten accepts a new key. Default idporten:dcr.read, which the
	// rotation's integration has.
	ProbeScope string `yaml:"probe_scope"`
	// ProbeInterval spaces the probes. Default 10 s.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// DeleteAfter is how long an old key stays in the HSM after it left
	// the registered keys. Default 7 days.
	DeleteAfter time.Duration `yaml:"delete_after"`
	// MaxTokenLifetime bounds how long a token lives, for the old key's
	// tokens got before the daemon started, which it does not know.
	// Default 1 h.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
}

// Cache tunes the token cache. Zero values take the cache's defaults.
type Cache struct {
	// RefreshMargin: a token is refreshed in the background when its
	// validity left falls below what its callers ask for plus this.
	// Default 30 s.
	RefreshMargin time.Duration `yaml:"refresh_margin"`
	// ErrorBackoff is how long a failed fetch is remembered at first (no
	// signature and no POST for the key meanwhile); it doubles with each
	// failure in a row, up to 30 s. Default 2 s.
	ErrorBackoff time.Duration `yaml:"error_backoff"`
	// MaxEntries bounds the keys cached. Default 10 000.
	MaxEntries int     `yaml:"max_entries"`
	Breaker    Breaker `yaml:"breaker"`
}

// Breaker is each environment's circuit breaker: after Threshold failed
// attempts at Maskinporten in a row, no attempt is made for CoolDown
// (doubling up to MaxCoolDown while it keeps failing), then one probe at
// a time. Cached tokens are served meanwhile. Defaults 3, 1 s and 30 s.
type Breaker struct {
	Threshold   int           `yaml:"threshold"`
	CoolDown    time.Duration `yaml:"cool_down"`
	MaxCoolDown time.Duration `yaml:"max_cool_down"`
}

// Maskinporten tunes the token requests.
type Maskinporten struct {
	// RequestTimeout bounds one attempt. Default 10 s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxAttempts bounds the attempts of one fetch. Default 4.
	MaxAttempts int `yaml:"max_attempts"`
	// RetryDeadline bounds all attempts of one fetch together. Default
	// request_timeout + 5 s: one slow attempt and one back-off, so that a
	// caller hears of an outage soon.
	RetryDeadline time.Duration `yaml:"retry_deadline"`
	// ClockThreshold: when the host's clock is further than this from
	// Maskinporten's (learnt from the Date of its answers), grants' iat
	// and exp follow Maskinporten's clock; Maskinporten refuses an iat
	// more than 10 s off. Under it the host's own time is used. Default
	// 3 s; not negative.
	ClockThreshold time.Duration `yaml:"clock_threshold"`
}

// GRPC tunes the server.
type GRPC struct {
	// MaxRecvBytes bounds a request message. Default 64 KiB: requests are
	// a few scopes.
	MaxRecvBytes int `yaml:"max_recv_bytes"`
	// ShutdownGrace is how long calls in flight may finish after SIGTERM.
	// Default 15 s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MaxConnections bounds the connections each listener holds open.
	// At the bound a new connection is still accepted and the one that has
	// read nothing for longest is closed, so that idle connections cannot
	// lock callers out. Lowered at start to fit the file descriptor limit.
	// Default 1024.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionIdle closes a connection that has had no call for this
	// long (the client reconnects when it next calls). Default 5 min.
	MaxConnectionIdle time.Duration `yaml:"max_connection_idle"`
	// MaxConcurrentStreams bounds the calls in flight on one connection.
	// Default 100.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// KeepaliveTime is how long a connection may be silent before the
	// daemon pings the client, and KeepaliveTimeout how long it then waits
	// for the answer before closing the connection: so a peer that died
	// without closing is found. Defaults 1 min and 20 s.
	KeepaliveTime    time.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
}

// Log configures structured logs.
type Log struct {
	// Format is "json" (default) or "text".
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Calls says which calls get their line at info: "errors" (default:
	// failures and denials only, which are always logged, at warn;
	// successful calls at debug), "all", or "sample" (one successful
	// call in CallsSample). Each call is in the audit log either way.
	Calls string `yaml:"calls"`
	// CallsSample is the one in how many successful calls that
	// Calls "sample" logs at info; default 100.
	CallsSample int `yaml:"calls_sample"`
}

// The values of log.calls.
const (
	LogCallsErrors = "errors"
	LogCallsAll    = "all"
	LogCallsSample = "sample"
)

// Audit configures the audit log (every policy decision and key use).
type Audit struct {
	// File is the active audit file. "{instance}" in it is replaced by
	// Instance: replicas sharing a directory (a shared volume) then keep
	// their logs apart, as in audit/audit-{instance}.log.
	File string `yaml:"file"`
	// Instance names this replica in every audit record and checkpoint,
	// and in the label of its audit head on the HSM
	// (portvakt-audit-head-<instance>): replicas on one HSM must each
	// have their own. 1 to 64 of A-Z a-z 0-9 . _ -; default: the host
	// name.
	Instance string `yaml:"instance"`
	// NoSync skips the fsync of signature records (decision and outcome
	// records are never waited for): faster, and a power cut may lose the
	// last records. Default false.
	NoSync bool `yaml:"no_sync"`
	// MaxBytes and MaxAge rotate the file; the hash chain continues.
	MaxBytes int64         `yaml:"max_bytes"`
	MaxAge   time.Duration `yaml:"max_age"`
	// Seal, when set, has the daemon append checkpoints signed by an audit
	// key in the HSM, which `portvakt audit verify --public-key` checks.
	Seal *AuditSeal `yaml:"seal"`
}

// AuditSeal configures the audit checkpoints.
type AuditSeal struct {
	// HSM names the HSM holding the audit key; default: the only HSM.
	HSM string `yaml:"hsm"`
	// KeyLabel and KeyID (hex) select the audit key: an RSA key of its
	// own, never an eSeal (`portvakt hsm keygen --label portvakt-audit`).
	// Default label: portvakt-audit.
	KeyLabel string `yaml:"key_label"`
	KeyID    string `yaml:"key_id"`
	// EveryRecords and Every say how often to seal: after this many
	// records, or this long after the last checkpoint while records come,
	// whichever is first; and always at a clean shutdown. Defaults 10000
	// and 10s: a checkpoint costs one HSM signature, one synced record and
	// one write of the head to the HSM, so sealing stays within a few per
	// cent of the cached path's throughput (see make bench).
	EveryRecords uint64        `yaml:"every_records"`
	Every        time.Duration `yaml:"every"`
}

// Metrics configures the Prometheus listener.
type Metrics struct {
	// Address, such as 127.0.0.1:9464; empty for no metrics listener.
	Address string `yaml:"address"`
}

// CertificateWatch warns before the certificates expire.
type CertificateWatch struct {
	// WarnBefore is the window before not-after in which the daemon warns.
	// Default 30 days.
	WarnBefore time.Duration `yaml:"warn_before"`
}
