// Package rotation replaces an environment's registered key with a new
// one without a failed call: a key made in the HSM, registered in the
// integration's JWKS beside the current one, probed until Maskinporten
// accepts its kid, switched to for new grants, and removed from the JWKS
// once the last token the old key got has expired, and later from the
// HSM. Every step is on the audit log before it is taken, and the state
// is kept on the HSM, so a restart resumes where the rotation stood.
//
// The package decides and orders the steps; the HSM, the JWKS at Digdir's
// self-service API, the daemon's signing and the audit are behind the
// small interfaces below, which the daemon implements.
package rotation

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/selfservice"
)

// HSM holds the rotation's keys and its state.
type HSM interface {
	// GenerateKey makes a signing key labelled label.
	GenerateKey(label string, bits int) (*rsa.PublicKey, error)
	// PublicKey is the public half of the key labelled label.
	PublicKey(label string) (*rsa.PublicKey, error)
	// DeleteKey removes the key labelled label, both halves; a key
	// already gone is no error, and one that something else signs with
	// is refused with ErrKeyInUse.
	DeleteKey(label string) error
	// LoadState reads the stored state; false when there is none.
	LoadState() (State, bool, error)
	// SaveState stores s in place of the state there.
	SaveState(s State) error
}

// Registry is the integration's JWKS at Digdir's self-service API.
type Registry interface {
	Keys(ctx context.Context) (selfservice.Set, error)
	Replace(ctx context.Context, keys []selfservice.JWK) (selfservice.Set, error)
}

// ErrNotYetAccepted means Maskinporten does not know the probed kid yet:
// registration takes up to a couple of minutes to reach its token
// endpoint.
var ErrNotYetAccepted = errors.New("Maskinporten does not accept the new key's kid yet")

// Signing is the daemon's use of the keys.
type Signing interface {
	// Probe signs a grant with k and posts it: nil when Maskinporten gave
	// a token, ErrNotYetAccepted (wrapped) while it does not know the kid.
	Probe(ctx context.Context, k Key) error
	// Switch makes k the key new grants are signed with, calling record
	// (the switch's audit record) at the moment it does: every grant the
	// old key signed is on record before, every grant of k after. A fetch
	// under way finishes with the key it began with. If record fails,
	// nothing is switched.
	Switch(k Key, record func() error) error
	// LastExpiry waits until no grant by the key with kid is in flight and
	// returns when the last token it got expires (zero if none).
	LastExpiry(ctx context.Context, kid string) (time.Time, error)
}

// Recorder puts a step on the audit log. A step is recorded before it is
// taken, and its failure after; a step that cannot be recorded is not
// taken.
type Recorder interface {
	Step(ctx context.Context, step string, k Key, err error) error
}

// The steps, as the audit records them.
const (
	StepCreated       = "created"       // the HSM made the key
	StepRegistering   = "registering"   // the set with it is about to be sent
	StepRegistered    = "registered"    // the JWKS holds it
	StepAccepted      = "accepted"      // Maskinporten took a grant with its kid
	StepSwitched      = "switched"      // new grants are signed with it
	StepUnregistering = "unregistering" // the set without the old key is about to be sent
	StepUnregistered  = "unregistered"  // the old key left the JWKS
	StepDeleting      = "deleting"      // the old key is about to leave the HSM
	StepDeleted       = "deleted"       // it has
	StepKept          = "kept"          // it stays: something else signs with it
)

// Config is an environment's rotation.
type Config struct {
	Environment string
	// Instance is this replica's audit instance: a rotation is driven by
	// the instance that began it, and followed by the others.
	Instance string
	// Auto begins a rotation by itself LeadTime before the current key's
	// registration expires.
	Auto     bool
	LeadTime time.Duration
	// KeyLifetime is a registered key's life when the JWKS does not say
	// when it expires (Maskinporten's: a year).
	KeyLifetime time.Duration
	// LabelPrefix begins a new key's label; a UTC time stamp ends it.
	LabelPrefix string
	Bits        int
	// ProbeInterval spaces the probes of a new key, and how often the
	// state is read again (a replica follows another's switch within
	// one).
	ProbeInterval time.Duration
	// DeleteAfter is how long the old key stays in the HSM after it left
	// the JWKS.
	DeleteAfter time.Duration
	// MaxTokenLifetime bounds a token's life: the old key leaves the
	// JWKS no sooner than this long after the last grant it may have
	// signed unseen by this run (another replica's, up to two probe
	// intervals after the switch; or one before this run's start).
	MaxTokenLifetime time.Duration
	// CheckInterval is how often an idle rotation reads the JWKS for the
	// current key's expiry.
	CheckInterval time.Duration
	// Backoff spaces the attempts after a failed step.
	Backoff backoff.Policy
	// Context, when set, is the context of each step: a request id of its
	// own for the step's audit records.
	Context func(context.Context) context.Context
	// OnStep, when set, is told of the status after every step and of the
	// step's error, if any (for metrics).
	OnStep func(Status, error)
}

// Rotator runs one environment's rotation.
type Rotator struct {
	cfg      Config
	hsm      HSM
	registry Registry
	signing  Signing
	record   Recorder
	log      *slog.Logger
	now      func() time.Time
	wake     chan struct{}

	mu       sync.Mutex
	state    State
	status   Status
	failures int // consecutive
	// pending is when a Request not yet stored by a step was made; zero
	// when none waits.
	pending time.Time
	// dueCached is when a rotation of key dueKID is due, read from the
	// JWKS at dueRead.
	dueKID    string
	dueRead   time.Time
	dueCached time.Time
}

// Status is what the rotation reports, for metrics and ListKeys.
type Status struct {
	State State
	// CurrentExpires is when the current key's registration ends; zero
	// when not known (the JWKS gives no expiry and the key was registered
	// before rotation).
	CurrentExpires time.Time
	// NextRotation is when an automatic rotation begins; zero without one.
	NextRotation time.Time
	// Failures counts failed steps since start; LastError is the latest.
	Failures  uint64
	LastError string
}

// New is a rotator starting from the state on the HSM, or, when there is
// none, from current: the configured key.
func New(cfg Config, hsm HSM, registry Registry, signing Signing, rec Recorder, current Key, log *slog.Logger) (*Rotator, error) {
	r := &Rotator{cfg: cfg, hsm: hsm, registry: registry, signing: signing, record: rec, log: log, now: time.Now, wake: make(chan struct{}, 1)}
	st, ok, err := hsm.LoadState()
	if err != nil {
		return nil, fmt.Errorf("environment %s: rotation: %w", cfg.Environment, err)
	}
	if !ok {
		st = State{Current: current}
	}
	r.state = st
	return r, nil
}

// Current is the key that signs, as the state on the HSM says.
func (r *Rotator) Current() Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Current
}

// Status is where the rotation stands: its state, with a request not
// yet stored shown as asked for.
func (r *Rotator) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.State = r.state
	if st.State.Requested.IsZero() {
		st.State.Requested = r.pending
	}
	return st
}

// ErrBusy means a rotation is under way already.
var ErrBusy = errors.New("a rotation is under way")

// Request asks for a rotation now (`portvakt keys rotate`). The next
// step, which it wakes, stores it on the HSM (so that it survives a
// restart) and begins the rotation, or, while an old key is still on its
// way out, once that is done. Only steps write the state: a request
// cannot be lost to a step storing the state it read before.
func (r *Rotator) Request() (State, error) {
	r.mu.Lock()
	if next := r.state.Next; next != nil {
		st := r.state
		r.mu.Unlock()
		return st, fmt.Errorf("%w: key %s (kid %s) is on its way in", ErrBusy, next.Label, next.KID)
	}
	if r.pending.IsZero() && r.state.Requested.IsZero() {
		r.pending = r.now().UTC()
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return r.Status().State, nil
}

// takeRequest returns when a Request not yet stored was made, and clears
// it; zero when none waits. putBack gives it back, for the next step.
func (r *Rotator) takeRequest() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := r.pending
	r.pending = time.Time{}
	return at
}

func (r *Rotator) putBack(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending.IsZero() {
		r.pending = at
	}
}

// Run drives the rotation until ctx ends.
func (r *Rotator) Run(ctx context.Context) {
	for {
		stepCtx := ctx
		if r.cfg.Context != nil {
			stepCtx = r.cfg.Context(ctx)
		}
		wait, err := r.Step(stepCtx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.mu.Lock()
			r.failures++
			r.status.Failures++
			r.status.LastError = err.Error()
			wait = r.cfg.Backoff.Delay(r.failures)
			r.mu.Unlock()
			r.log.Warn("key rotation: a step failed; nothing in use was touched, and it is tried again", "environment", r.cfg.Environment, "retry_in", wait.Round(time.Millisecond), "error", err)
		} else {
			r.mu.Lock()
			r.failures = 0
			r.mu.Unlock()
		}
		if r.cfg.OnStep != nil {
			r.cfg.OnStep(r.Status(), err)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-r.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}
