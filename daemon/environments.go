package daemon

import (
	"cmp"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
	"github.com/portvakt/portvakt/tokenservice"
)

// openEnvironments opens each HSM that an environment uses (one token
// object per HSM, however many keys are on it), each environment's key
// (once per distinct key: environments may share one) and its grant
// builder.
func (d *Daemon) openEnvironments() ([]*tokenservice.Environment, error) {
	signers := map[string]*signer.Signer{}
	var envs []*tokenservice.Environment
	for i := range d.cfg.Environments {
		env, err := d.openEnvironment(i, signers)
		if err != nil {
			return nil, err
		}
		envs = append(envs, env)
	}
	return envs, nil
}

// openEnvironment opens environment i: its HSM, its key (or the one in
// signers, opened before for another environment), checks the key's
// certificate (or, for a registered key, its public half), and makes its
// grant builder.
func (d *Daemon) openEnvironment(i int, signers map[string]*signer.Signer) (*tokenservice.Environment, error) {
	e := d.cfg.Environments[i]
	mpEnv, err := e.Resolve()
	if err != nil {
		return nil, fmt.Errorf("environment %s: %w", e.Name, err)
	}
	h := d.cfg.HSMOf(e)
	tok, err := d.token(h)
	if err != nil {
		return nil, fmt.Errorf("environment %s: %w", e.Name, err)
	}
	rot, err := d.rotationAtStart(i, tok)
	if err != nil {
		return nil, err
	}
	if rot != nil && (rot.current.Label != e.KeyLabel || rot.current.KID != e.KeyIDHeader) {
		// A rotation replaced the configured key: the key it names signs.
		return d.openRotatedEnvironment(i, tok, signers, mpEnv, rot)
	}
	// A key registered by kid alone is opened without a certificate.
	noCert := e.RegisteredKeyOnly()
	s, err := openKey(tok, signers, signer.KeyConfig{KeyLabel: e.KeyLabel, KeyID: e.KeyIDBytes(), CertificateFile: e.CertificateFile, NoCertificate: noCert})
	if err != nil {
		if e.KeyIDWithX5C && !errors.Is(err, signer.ErrKeyNotFound) {
			return nil, fmt.Errorf("%s.kid_with_x5c: x5c beside the kid needs the key's certificate (HSM %s): %w; or remove kid_with_x5c to send the kid alone",
				d.cfg.EnvironmentField(i), h.Name, err)
		}
		return nil, fmt.Errorf("environment %s (HSM %s): %w", e.Name, h.Name, err)
	}
	if noCert {
		if err := d.checkRegisteredKey(s, e, d.cfg.EnvironmentField(i)); err != nil {
			return nil, err
		}
	} else if err := checkCertificate(s.Certificate(), e.Name, time.Now()); err != nil {
		// An expired certificate with a successor: the successor signs.
		if e.Successor == nil || !time.Now().After(s.Certificate().NotAfter) {
			return nil, err
		}
	}
	clock := d.newClock(e.Name)
	builder, err := maskinporten.NewGrantBuilder(s, maskinporten.GrantOptions{Alg: e.GrantAlg, KeyID: e.KeyIDHeader, KeyIDWithX5C: e.KeyIDWithX5C, Now: clock.Now})
	if err != nil {
		return nil, fmt.Errorf("environment %s: %w", e.Name, err)
	}
	env, err := d.newEnvironment(i, tok, signers, mpEnv, clock, &tokenservice.SigningKey{Builder: builder, Signer: s})
	if err != nil {
		return nil, err
	}
	if rot != nil {
		d.rotationStarts = append(d.rotationStarts, rot)
	}
	if e.Successor != nil {
		next, err := d.openSuccessor(i, tok, signers, clock, s.Certificate())
		if err != nil {
			return nil, err
		}
		env.SetSuccessor(next)
		// Its time came while the daemon was down: it signs from the
		// start. The takeover's record waits for the audit log, which
		// opens after the environments, and comes before any grant
		// (recordStartTakeovers).
		if took, _ := env.Succeed(time.Now(), nil); took {
			d.startTakeovers = append(d.startTakeovers, startTakeover{env: e.Name, next: next})
			d.log.Info("the successor certificate signs: its time has come", "environment", e.Name, "since", next.At.UTC().Format(time.RFC3339))
		}
	}
	return env, nil
}

// openRotatedEnvironment opens environment i with the key its rotation
// state names in place of the configured one.
func (d *Daemon) openRotatedEnvironment(i int, tok *signer.Token, signers map[string]*signer.Signer, mpEnv maskinporten.Environment, rot *rotationStart) (*tokenservice.Environment, error) {
	e := d.cfg.Environments[i]
	clock := d.newClock(e.Name)
	sk, err := rotatedKey(tok, rot.opened, e, clock, rot.current)
	if err != nil {
		return nil, fmt.Errorf("%s.rotation: the key its state names: %w", d.cfg.EnvironmentField(i), err)
	}
	if err := sk.Signer.CheckSigns(); err != nil {
		return nil, fmt.Errorf("environment %s: %w", e.Name, err)
	}
	env, err := d.newEnvironment(i, tok, signers, mpEnv, clock, sk)
	if err != nil {
		return nil, err
	}
	d.log.Info("environment signs with the key its rotation put in place of the configured one",
		"environment", e.Name, "key_label", rot.current.Label, "kid", rot.current.KID, "configured_key_label", e.KeyLabel, "configured_kid", e.KeyIDHeader)
	d.rotationStarts = append(d.rotationStarts, rot)
	return env, nil
}

// newEnvironment is environment i signing with key, its self-service key
// opened.
func (d *Daemon) newEnvironment(i int, tok *signer.Token, signers map[string]*signer.Signer, mpEnv maskinporten.Environment, clock *maskinporten.Clock, key *tokenservice.SigningKey) (*tokenservice.Environment, error) {
	e := d.cfg.Environments[i]
	selfService, err := d.openSelfServiceKey(i, tok, signers, clock)
	if err != nil {
		return nil, err
	}
	env := &tokenservice.Environment{
		Config: mpEnv, ClientID: e.ClientID, Discovery: e.Discovery,
		Clock: clock, SelfServiceURL: mpEnv.SelfServiceURL, SelfServiceKey: selfService,
	}
	env.SetSigning(key)
	return env, nil
}

// openSuccessor opens environment i's successor: its key (the
// environment's own when none is named) with the renewed certificate,
// checked, for the same organisation as current, and its grant builder;
// it takes over at successor.from or when current expires, whichever is
// first.
func (d *Daemon) openSuccessor(i int, tok *signer.Token, signers map[string]*signer.Signer, clock *maskinporten.Clock, current *x509.Certificate) (*tokenservice.Succession, error) {
	e := d.cfg.Environments[i]
	succ := *e.Successor
	at := d.cfg.EnvironmentField(i) + ".successor"
	if succ.KeyLabel == "" && succ.KeyID == "" {
		succ.KeyLabel, succ.KeyID = e.KeyLabel, e.KeyID
	}
	s, err := openKey(tok, signers, signer.KeyConfig{KeyLabel: succ.KeyLabel, KeyID: succ.KeyIDBytes(), CertificateFile: succ.CertificateFile})
	if err != nil {
		return nil, fmt.Errorf("%s (HSM %s): %w", at, tok.Name(), err)
	}
	cert := s.Certificate()
	takeOver := current.NotAfter
	if from := succ.FromTime(); !from.IsZero() && from.Before(takeOver) {
		takeOver = from
	}
	switch {
	case !cert.NotAfter.After(current.NotAfter):
		return nil, fmt.Errorf("%s: the certificate %q ends %s, no later than the current one (%s): it is no renewal",
			at, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.DateOnly), current.NotAfter.UTC().Format(time.DateOnly))
	case takeOver.Before(cert.NotBefore):
		return nil, fmt.Errorf("%s: it would take over at %s, before its certificate %q is valid (from %s); set from to %s or later",
			at, takeOver.UTC().Format(time.RFC3339), cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if err := checkCertificate(cert, e.Name, takeOver); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if was, now := orgOf(current), orgOf(cert); was != now {
		return nil, fmt.Errorf("%s: the certificate %q is for organisation %s, the current one for %s; a successor certifies the same organisation", at, cert.Subject.CommonName, now, was)
	}
	builder, err := maskinporten.NewGrantBuilder(s, maskinporten.GrantOptions{Alg: e.GrantAlg, KeyID: e.KeyIDHeader, KeyIDWithX5C: e.KeyIDWithX5C, Now: clock.Now})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	return &tokenservice.Succession{Key: &tokenservice.SigningKey{Builder: builder, Signer: s}, At: takeOver}, nil
}

// openKey opens k on tok, or returns the signer opened for the same key
// and certificate before (signers, by token and KeyConfig): environments
// may share a key, and a key is opened once.
func openKey(tok *signer.Token, signers map[string]*signer.Signer, k signer.KeyConfig) (*signer.Signer, error) {
	ref := fmt.Sprint(tok.Name(), "\x00", k.KeyLabel, "\x00", hex.EncodeToString(k.KeyID), "\x00", k.CertificateFile, "\x00", k.NoCertificate)
	if s, ok := signers[ref]; ok {
		return s, nil
	}
	s, err := tok.Key(k)
	if err != nil {
		return nil, err
	}
	signers[ref] = s
	return s, nil
}

func orgOf(cert *x509.Certificate) string {
	n, err := orgno.FromCertificate(cert)
	if err != nil {
		return "none"
	}
	return n.String()
}

// openSelfServiceKey opens environment i's self_service key, the
// enterprise certificate's, with its certificate checked, and makes its
// builder of x5c grants; nil when none is configured (the environment's
// own key then signs the self-service API's grants, if it has a
// certificate).
func (d *Daemon) openSelfServiceKey(i int, tok *signer.Token, signers map[string]*signer.Signer, clock *maskinporten.Clock) (*tokenservice.SigningKey, error) {
	e := d.cfg.Environments[i]
	ss := e.SelfService
	if ss.KeyLabel == "" && ss.KeyID == "" {
		return nil, nil
	}
	at := d.cfg.EnvironmentField(i) + ".self_service"
	s, err := openKey(tok, signers, signer.KeyConfig{KeyLabel: ss.KeyLabel, KeyID: ss.KeyIDBytes()})
	if err != nil {
		return nil, fmt.Errorf("%s: the enterprise certificate's key (HSM %s): %w", at, tok.Name(), err)
	}
	if err := checkCertificate(s.Certificate(), e.Name, time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	builder, err := maskinporten.NewGrantBuilder(s, maskinporten.GrantOptions{Alg: e.GrantAlg, Now: clock.Now})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	return &tokenservice.SigningKey{Builder: builder, Signer: s}, nil
}

// token returns the HSM's token, opening it the first time: one token
// object per HSM, whatever uses it.
func (d *Daemon) token(h *config.HSM) (*signer.Token, error) {
	for _, t := range d.tokens {
		if t.Name() == h.Name {
			return t, nil
		}
	}
	t, err := d.openToken(h)
	if err != nil {
		return nil, err
	}
	d.tokens = append(d.tokens, t)
	return t, nil
}

// openToken resolves an HSM's module, reads its PIN and opens its token.
func (d *Daemon) openToken(h *config.HSM) (*signer.Token, error) {
	access, err := resolveHSM(h)
	if err != nil {
		return nil, err
	}
	var tok *signer.Token
	err = d.awaitHSM(h.Name, func() (err error) {
		tok, err = signer.OpenToken(signer.TokenConfig{
			Name: h.Name, Module: access.Module, TokenLabel: access.Label, PIN: access.PIN,
			MaxSessions: h.MaxSessions, SessionWait: h.SessionWait, ProbeInterval: h.ProbeInterval,
			Logger: d.log, OnChange: d.updateHealth, ObserveSign: d.metrics.ObserveSign,
		})
		return err
	})
	if err != nil {
		var te *p11.TokenError
		if errors.As(err, &te) && te.AboutPIN() {
			// Name where the refused PIN came from, so the operator knows
			// which file or variable to fix (never its content).
			return nil, fmt.Errorf("HSM %s: the user PIN from hsm pin %s: %w", h.Name, h.PIN, err)
		}
		return nil, fmt.Errorf("HSM %s: %w", h.Name, err)
	}
	return tok, nil
}

// resolveHSM reads an HSM's PIN. Its module path is given: the command
// line fills in SoftHSM2's for development (softhsm.Resolve).
func resolveHSM(h *config.HSM) (hsm.Token, error) {
	if h.Module == "" {
		return hsm.Token{}, fmt.Errorf("HSM %s: module is not set: give the path of the HSM's PKCS#11 module", h.Name)
	}
	pin, err := h.PIN.Load()
	if err != nil {
		return hsm.Token{}, fmt.Errorf("HSM %s: pin: %w", h.Name, err)
	}
	return hsm.Token{Module: h.Module, Label: h.Token, PIN: pin}, nil
}

// checkCertificate refuses to start with a certificate that is not valid
// now: every grant signed with it would be refused (MP-121).
func checkCertificate(cert *x509.Certificate, env string, now time.Time) error {
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("environment %s: the certificate %q expired on %s; import a renewed one (`portvakt hsm import-cert`)",
			env, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("environment %s: the certificate %q is not valid before %s (is the clock right?)",
			env, cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkPolicyEnvironments refuses a policy that names environments the
// daemon does not serve: most likely a typo that would deny silently.
func checkPolicyEnvironments(p *policy.Policy, envs []*tokenservice.Environment) error {
	served := map[string]bool{}
	var names []string
	for _, e := range envs {
		served[e.Config.Name] = true
		names = append(names, e.Config.Name)
	}
	var unknown []string
	for _, name := range p.Environments() {
		if !served[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("the policy names environments this daemon does not serve: %s (configured: %s)",
			strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return nil
}

func newMaskinportenClient(cfg *config.Config, clock clockwork.Clock) *maskinporten.Client {
	opts := maskinporten.ClientOptions{RequestTimeout: cfg.Maskinporten.RequestTimeout, UserAgent: "portvakt"}
	if clock != nil {
		opts.Now = clock.Now
	}
	return maskinporten.NewClient(opts)
}

// cacheOptions are the token cache's settings from the configuration;
// zero values take the cache's defaults.
func cacheOptions(cfg *config.Config, clock clockwork.Clock, onBreaker func(env string, open bool)) tokencache.Options {
	fetchTimeout := cfg.Maskinporten.RetryDeadline
	if fetchTimeout == 0 {
		// One slow attempt and one back-off: a caller hears of an outage
		// soon, whatever deadline it gave.
		fetchTimeout = cmp.Or(cfg.Maskinporten.RequestTimeout, maskinporten.DefaultRequestTimeout) + tokencache.DefaultRetryMax
	}
	return tokencache.Options{
		RefreshMargin: cfg.Cache.RefreshMargin,
		ErrorBackoff:  backoff.Policy{Initial: cfg.Cache.ErrorBackoff},
		MaxAttempts:   cfg.Maskinporten.MaxAttempts,
		FetchTimeout:  fetchTimeout,
		MaxEntries:    cfg.Cache.MaxEntries,
		Breaker: tokencache.BreakerOptions{
			Threshold: cfg.Cache.Breaker.Threshold,
			CoolDown:  backoff.Policy{Initial: cfg.Cache.Breaker.CoolDown, Max: cfg.Cache.Breaker.MaxCoolDown},
		},
		OnBreaker: onBreaker,
		Clock:     clock,
	}
}

// breakerChanged reports an environment's circuit breaker opening or
// closing: in health, the metric and one log line each way.
func (d *Daemon) breakerChanged(env string, open bool) {
	if open {
		d.log.Warn("Maskinporten keeps failing for this environment: no attempts for a while, then one at a time; cached tokens are still served", "environment", env)
	} else {
		d.log.Info("Maskinporten answers again for this environment", "environment", env)
	}
	d.updateHealth()
}
