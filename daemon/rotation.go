package daemon

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/rotation"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/selfservice"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokenservice"
)

// Rotation's fixed settings: how often an idle rotation looks at the
// registered keys (their expiry), and the back-off after a failed step.
const rotationCheckInterval = time.Hour

var rotationBackoff = backoff.Policy{Initial: time.Second, Max: 5 * time.Minute}

// rotationStateLabel is the HSM data object holding env's rotation state.
func rotationStateLabel(env string) string { return "portvakt-rotation-" + env }

// rotationKeys is rotation.HSM on an environment's token: its keys, and
// the state as a private data object beside them.
type rotationKeys struct {
	tok    *signer.Token
	access hsm.Token
	label  string // the state's data object
	opened *openedKeys
	// usedBy names what signs with the key pub (an environment's
	// signing, self-service or successor key); "" for nothing.
	usedBy func(pub *rsa.PublicKey) string
}

func (h rotationKeys) GenerateKey(label string, bits int) (*rsa.PublicKey, error) {
	s, err := h.tok.GenerateKey(label, bits)
	if err != nil {
		return nil, err
	}
	h.opened.put(label, s)
	return s.Public().(*rsa.PublicKey), nil
}

func (h rotationKeys) PublicKey(label string) (*rsa.PublicKey, error) {
	s, err := h.opened.open(h.tok, label)
	if err != nil {
		return nil, err
	}
	return s.Public().(*rsa.PublicKey), nil
}

func (h rotationKeys) DeleteKey(label string) error {
	pub, err := h.PublicKey(label)
	switch {
	case errors.Is(err, signer.ErrKeyNotFound):
		return nil // gone already
	case err != nil:
		return err
	}
	if user := h.usedBy(pub); user != "" {
		return fmt.Errorf("%w: %s", rotation.ErrKeyInUse, user)
	}
	return h.tok.DeleteKey(label)
}

func (h rotationKeys) LoadState() (rotation.State, bool, error) {
	return loadRotationState(h.access, h.label)
}

func (h rotationKeys) SaveState(s rotation.State) error {
	return hsm.WriteObject(h.access, h.label, s.Marshal())
}

// loadRotationState reads the state stored under label, if any.
func loadRotationState(access hsm.Token, label string) (rotation.State, bool, error) {
	values, err := hsm.ReadObjects(access, label)
	if err != nil || len(values) == 0 {
		return rotation.State{}, false, err
	}
	// WriteObject leaves one, or two when a write was cut between
	// storing the new value and removing the old: take the one that
	// parses and was stored last.
	var best rotation.State
	found := false
	var errs []error
	for _, v := range values {
		st, err := rotation.ParseState(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || furtherAlong(st, best) {
			best, found = st, true
		}
	}
	if !found {
		return rotation.State{}, false, fmt.Errorf("data object %q: %w", label, errors.Join(errs...))
	}
	return best, true, nil
}

// furtherAlong says whether a was stored after b: every store touches
// the state.
func furtherAlong(a, b rotation.State) bool { return a.Touched.After(b.Touched) }

// openedKeys are the signers a rotation opened, by label: a key is
// opened once however often it is probed.
type openedKeys struct {
	mu   sync.Mutex
	keys map[string]*signer.Signer
}

func (o *openedKeys) put(label string, s *signer.Signer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.keys == nil {
		o.keys = map[string]*signer.Signer{}
	}
	o.keys[label] = s
}

func (o *openedKeys) open(tok *signer.Token, label string) (*signer.Signer, error) {
	o.mu.Lock()
	s := o.keys[label]
	o.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := tok.Key(signer.KeyConfig{KeyLabel: label, NoCertificate: true})
	if err != nil {
		return nil, err
	}
	o.put(label, s)
	return s, nil
}

// rotationSigning is rotation.Signing on the daemon's token service.
type rotationSigning struct {
	service *tokenservice.Service
	env     *tokenservice.Environment
	tok     *signer.Token
	cfg     config.Environment
	opened  *openedKeys

	mu   sync.Mutex
	keys map[string]*tokenservice.SigningKey // by kid
}

// key is k's signer and grant builder, made once.
func (s *rotationSigning) key(k rotation.Key) (*tokenservice.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sk := s.keys[k.KID]; sk != nil {
		return sk, nil
	}
	sk, err := rotatedKey(s.tok, s.opened, s.cfg, s.env.Clock, k)
	if err != nil {
		return nil, err
	}
	if s.keys == nil {
		s.keys = map[string]*tokenservice.SigningKey{}
	}
	s.keys[k.KID] = sk
	return sk, nil
}

// rotatedKey opens k, a key a rotation made, and its builder of kid
// grants; the key under k's label must be the kid's (its thumbprint).
func rotatedKey(tok *signer.Token, opened *openedKeys, e config.Environment, clock *maskinporten.Clock, k rotation.Key) (*tokenservice.SigningKey, error) {
	s, err := opened.open(tok, k.Label)
	if err != nil {
		return nil, fmt.Errorf("key %s (kid %s): %w", k.Label, k.KID, err)
	}
	if !k.Created.IsZero() { // made by a rotation: its kid is its thumbprint
		if kid, err := selfservice.Thumbprint(s.Public()); err != nil || kid != k.KID {
			return nil, fmt.Errorf("the HSM's key %s is not the key of kid %s the rotation state names (its thumbprint is %s)", k.Label, k.KID, kid)
		}
	}
	builder, err := maskinporten.NewGrantBuilder(s, maskinporten.GrantOptions{Alg: e.GrantAlg, KeyID: k.KID, Now: clock.Now})
	if err != nil {
		return nil, err
	}
	return &tokenservice.SigningKey{Builder: builder, Signer: s}, nil
}

func (s *rotationSigning) Probe(ctx context.Context, k rotation.Key) error {
	sk, err := s.key(k)
	if err != nil {
		return err
	}
	err = s.service.Probe(ctx, s.env, sk, s.cfg.Rotation.ProbeScope)
	if errors.Is(err, tokenservice.ErrUnknownKID) {
		return fmt.Errorf("%w: %w", rotation.ErrNotYetAccepted, err)
	}
	return err
}

func (s *rotationSigning) Switch(k rotation.Key, record func() error) error {
	sk, err := s.key(k)
	if err != nil {
		return err
	}
	return s.env.SwitchSigning(sk, record)
}

func (s *rotationSigning) LastExpiry(ctx context.Context, kid string) (time.Time, error) {
	return s.env.LastExpiry(ctx, kid)
}

// rotationRecorder is rotation.Recorder on the daemon's audit.
type rotationRecorder struct {
	service *tokenservice.Service
	env     string
}

func (r rotationRecorder) Step(ctx context.Context, step string, k rotation.Key, err error) error {
	return r.service.RecordRotationStep(ctx, r.env, step, k.Label, k.KID, err)
}

// rotationRegistry is rotation.Registry on the self-service API, with the
// daemon's own tokens.
type rotationRegistry struct {
	api      *selfservice.Client
	clientID string
}

func (r rotationRegistry) Keys(ctx context.Context) (selfservice.Set, error) {
	return r.api.Keys(ctx, r.clientID)
}

func (r rotationRegistry) Replace(ctx context.Context, keys []selfservice.JWK) (selfservice.Set, error) {
	return r.api.Replace(ctx, r.clientID, keys)
}

// rotationStart is what openEnvironment found for an environment's
// rotation, for openRotations once the service exists.
type rotationStart struct {
	index   int
	tok     *signer.Token
	access  hsm.Token
	current rotation.Key // the key that signs: the state's, else the configured
	opened  *openedKeys
}

// rotationAtStart is what environment i's rotation needs at start, nil
// without one: its HSM, and the key that signs: the one its
// rotation state names, when it has one, else the configured one. The
// state is read before any key is opened: the configured key may be gone.
func (d *Daemon) rotationAtStart(i int, tok *signer.Token) (*rotationStart, error) {
	e := d.cfg.Environments[i]
	if e.Rotation == nil {
		return nil, nil
	}
	access, err := resolveHSM(d.cfg.HSMOf(e))
	if err != nil {
		return nil, err
	}
	rs := &rotationStart{index: i, tok: tok, access: access, opened: &openedKeys{}, current: rotation.Key{Label: e.KeyLabel, KID: e.KeyIDHeader}}
	var st rotation.State
	var ok bool
	err = d.awaitHSM(tok.Name(), func() (err error) {
		st, ok, err = loadRotationState(access, rotationStateLabel(e.Name))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s.rotation: reading its state from HSM %s: %w", d.cfg.EnvironmentField(i), tok.Name(), err)
	}
	if ok {
		rs.current = st.Current
	}
	return rs, nil
}

// openRotations makes each configured rotation, now that the service
// that signs, records and gets the self-service API's tokens exists.
func (d *Daemon) openRotations(starts []*rotationStart) error {
	for _, rs := range starts {
		e := d.cfg.Environments[rs.index]
		env := d.service.Environment(e.Name)
		name := e.Name
		token := func(ctx context.Context) (secret.Value, error) {
			return d.service.OwnToken(ctx, name, selfservice.ScopeRead, selfservice.ScopeModify)
		}
		api, err := selfservice.New(env.SelfServiceURL, token, selfservice.Options{})
		if err != nil {
			return fmt.Errorf("%s.rotation: %w", d.cfg.EnvironmentField(rs.index), err)
		}
		r := e.Rotation
		cfg := rotation.Config{
			Environment: name, Instance: d.cfg.Audit.Instance,
			Auto: r.Auto, LeadTime: r.LeadTime, KeyLifetime: 365 * 24 * time.Hour,
			LabelPrefix: r.KeyLabelPrefix, Bits: r.Bits, ProbeInterval: r.ProbeInterval,
			DeleteAfter: r.DeleteAfter, MaxTokenLifetime: r.MaxTokenLifetime,
			CheckInterval: rotationCheckInterval, Backoff: rotationBackoff,
			Context: tokenservice.RotationContext,
			OnStep:  func(st rotation.Status, err error) { d.rotationMetrics(name, st, err) },
		}
		keys := rotationKeys{tok: rs.tok, access: rs.access, label: rotationStateLabel(name), opened: rs.opened,
			usedBy: d.keyUsedBy}
		signing := &rotationSigning{service: d.service, env: env, tok: rs.tok, cfg: e, opened: rs.opened}
		rot, err := rotation.New(cfg, keys, rotationRegistry{api: api, clientID: env.ClientID}, signing, rotationRecorder{service: d.service, env: name}, rs.current, d.log)
		if err != nil {
			return err
		}
		env.Rotation = rot
		d.rotationMetrics(name, rot.Status(), nil)
	}
	return nil
}

// runRotations drives every environment's rotation until ctx ends; wait
// returns once all have stopped.
func (d *Daemon) runRotations(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for _, e := range d.service.Environments() {
		if r := e.Rotation; r != nil {
			wg.Go(func() { r.Run(ctx) })
		}
	}
	return wg.Wait
}

// rotationMetrics sets an environment's key and rotation gauges.
func (d *Daemon) rotationMetrics(env string, st rotation.Status, err error) {
	m := d.metrics
	if err != nil {
		m.RotationFailures.WithLabelValues(env).Inc()
	} else {
		m.RotationFailures.WithLabelValues(env).Add(0)
	}
	setOrDelete(m.RegisteredKeyCreated.WithLabelValues, m.RegisteredKeyCreated.DeleteLabelValues, env, st.State.Current.Created)
	setOrDelete(m.RegisteredKeyExpiry.WithLabelValues, m.RegisteredKeyExpiry.DeleteLabelValues, env, st.CurrentExpires)
	setOrDelete(m.RotationNext.WithLabelValues, m.RotationNext.DeleteLabelValues, env, st.NextRotation)
	busy := 0.0
	if st.State.Next != nil || st.State.Previous != nil || !st.State.Requested.IsZero() {
		busy = 1
	}
	m.RotationInProgress.WithLabelValues(env).Set(busy)
}

// setOrDelete sets a time gauge, or removes it for a zero time.
func setOrDelete[G interface{ Set(float64) }](with func(...string) G, del func(...string) bool, env string, t time.Time) {
	if t.IsZero() {
		del(env)
		return
	}
	with(env).Set(float64(t.Unix()))
}

// keyUsedBy names what signs with the key pub: an environment's signing
// key, self-service key or waiting successor; "" for nothing.
func (d *Daemon) keyUsedBy(pub *rsa.PublicKey) string {
	type use struct {
		what string
		key  *tokenservice.SigningKey
	}
	for _, e := range d.service.Environments() {
		uses := []use{{"the signing key", e.Signing()}, {"the self-service key", e.SelfServiceKey}}
		if next := e.Successor(); next != nil {
			uses = append(uses, use{"the successor", next.Key})
		}
		for _, u := range uses {
			if u.key == nil {
				continue
			}
			if own, ok := u.key.Signer.Public().(*rsa.PublicKey); ok && own.Equal(pub) {
				return fmt.Sprintf("%s of environment %s", u.what, e.Config.Name)
			}
		}
	}
	return ""
}
