package signer

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/portvakt/portvakt/secret"
)

// TokenConfig says which token a Token opens and how it keeps it.
type TokenConfig struct {
	// Name names the token in logs (the configuration's HSM name); default
	// the token label.
	Name string
	// Module is the path of the PKCS#11 library.
	Module string
	// TokenLabel selects the token. Slot numbers are never used: they move.
	TokenLabel string
	// PIN logs in to the token as its user.
	PIN secret.Value
	// MaxSessions bounds the PKCS#11 sessions the Token opens, for all its
	// keys together (one of them is kept idle to hold the login). Default 4.
	MaxSessions int
	// SessionWait bounds how long Sign waits for a free session when all
	// are busy or the token is out of sessions. Default 5 s.
	SessionWait time.Duration
	// ProbeInterval is how often the token is asked, on an idle session,
	// whether it is still there, so that an outage is seen without traffic.
	// While the token is away, reconnection is tried at least this often.
	// Default 5 s.
	ProbeInterval time.Duration
	// Backoff paces reconnection attempts after the token went away; its
	// Max is capped at ProbeInterval.
	Backoff Backoff
	// Logger receives outage and reconnection events. Default slog.Default().
	Logger *slog.Logger
	// OnChange, when set, is called after the token went away, came back or
	// stopped recovering; it reads the new state with Health. It is called
	// without locks held and may be called more than once per change.
	OnChange func()
	// ObserveSign, when set, is told of every signature: how long it took
	// and its error, for metrics.
	ObserveSign func(d time.Duration, err error)
}

// KeyConfig selects one private key on a token.
type KeyConfig struct {
	// KeyLabel and KeyID (CKA_LABEL, CKA_ID) select the private key; at least
	// one must be set, and together they must match exactly one key.
	KeyLabel string
	KeyID    []byte
	// CertificateFile, when set, is a PEM file holding the key's certificate
	// first and then its chain. When empty the certificate and chain are read
	// from the token's certificate objects.
	CertificateFile string
	// NoCertificate opens a key that has no certificate, such as the audit
	// key: its public half is the token's public key object, and after an
	// outage the key found must still have that public half.
	NoCertificate bool
}

// Config is a token and one key on it, for Open.
type Config struct {
	Token TokenConfig
	Key   KeyConfig
}

const (
	defaultMaxSessions   = 4
	defaultSessionWait   = 5 * time.Second
	defaultProbeInterval = 5 * time.Second
	defaultBackoffMin    = 100 * time.Millisecond
	defaultBackoffMax    = 30 * time.Second
	// minRSABits is the smallest key Portvakt signs with; CAs issue no
	// eSeal for less.
	minRSABits = 2048
)

func (c *TokenConfig) setDefaults() {
	if c.Name == "" {
		c.Name = c.TokenLabel
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = defaultMaxSessions
	}
	if c.SessionWait == 0 {
		c.SessionWait = defaultSessionWait
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = defaultProbeInterval
	}
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = defaultBackoffMin
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = defaultBackoffMax
	}
	// A token that is back must be found within a probe interval, whatever
	// the back-off has grown to.
	c.Backoff.Max = min(c.Backoff.Max, c.ProbeInterval)
	c.Backoff.Initial = min(c.Backoff.Initial, c.Backoff.Max)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *TokenConfig) validate() error {
	var problems []string
	if c.Module == "" {
		problems = append(problems, "the PKCS#11 module path is empty")
	}
	if c.TokenLabel == "" {
		problems = append(problems, "the token label is empty")
	}
	if c.PIN.IsZero() {
		problems = append(problems, "no PIN was given")
	}
	if c.MaxSessions < 2 {
		problems = append(problems, fmt.Sprintf("max sessions is %d; it must be at least 2 (one holds the login)", c.MaxSessions))
	}
	if c.SessionWait < 0 {
		problems = append(problems, "the session wait must not be negative")
	}
	if c.ProbeInterval < 0 {
		problems = append(problems, "the probe interval must not be negative")
	}
	if c.Backoff.Initial < 0 || c.Backoff.Max < c.Backoff.Initial {
		problems = append(problems, "the reconnect back-off must have 0 < initial <= max")
	}
	if len(problems) > 0 {
		return fmt.Errorf("token configuration: %s", joinProblems(problems))
	}
	return nil
}

func (k *KeyConfig) validate() error {
	if k.KeyLabel == "" && len(k.KeyID) == 0 {
		return fmt.Errorf("key configuration: neither a key label nor a key id was given")
	}
	if k.NoCertificate && k.CertificateFile != "" {
		return fmt.Errorf("key configuration: a certificate file was given for a key opened without a certificate")
	}
	return nil
}

func (k *KeyConfig) String() string {
	switch {
	case k.KeyLabel != "" && len(k.KeyID) > 0:
		return fmt.Sprintf("label %q id %x", k.KeyLabel, k.KeyID)
	case len(k.KeyID) > 0:
		return fmt.Sprintf("id %x", k.KeyID)
	default:
		return fmt.Sprintf("label %q", k.KeyLabel)
	}
}
