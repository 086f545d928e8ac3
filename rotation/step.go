package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/portvakt/portvakt/selfservice"
)

// retireMargin is added to the old key's last token's expiry before it
// leaves the JWKS: a margin for the clocks of Maskinporten and the APIs
// that check its tokens.
const retireMargin = 5 * time.Second

// Step takes the rotation's next step if its time has come, and says how
// long until it should be called again. A failed step changes nothing in
// use: the current key keeps signing, and the step is taken again.
func (r *Rotator) Step(ctx context.Context) (time.Duration, error) {
	st, err := r.reload(ctx)
	if err != nil {
		return 0, err
	}
	now := r.now().UTC()
	if at := r.takeRequest(); !at.IsZero() && st.Next == nil && st.Requested.IsZero() {
		st.Requested = at
		if st.Previous == nil { // else the replica retiring it begins this one
			st.Driver = r.cfg.Instance
		}
		if err := r.save(st); err != nil {
			r.putBack(at) // stored by the next step
			return 0, fmt.Errorf("storing the rotation request: %w", err)
		}
	}
	if busy(st) && st.Driver != r.cfg.Instance {
		if silent := now.Sub(st.Touched); silent < r.takeoverAfter() {
			// Another replica drives this rotation; follow its switch.
			return r.cfg.ProbeInterval, nil
		}
		r.log.Warn("key rotation: the replica driving it has been silent; taking it over", "environment", r.cfg.Environment,
			"driver", st.Driver, "last_heard", st.Touched.Format(time.RFC3339))
		st.Driver = r.cfg.Instance
		if err := r.save(st); err != nil {
			return 0, err
		}
	}
	if busy(st) && now.Sub(st.Touched) >= r.heartbeat() {
		if err := r.save(st); err != nil { // the driver is alive
			return 0, err
		}
	}
	wait, err := r.act(ctx, st, now)
	if busy(r.Status().State) {
		wait = min(wait, r.heartbeat())
	}
	return wait, err
}

// heartbeat is how often the driver stores the state while a rotation
// is under way, and takeoverAfter how long another replica waits for it
// before it takes over.
func (r *Rotator) heartbeat() time.Duration     { return 3 * r.cfg.ProbeInterval }
func (r *Rotator) takeoverAfter() time.Duration { return 10 * r.cfg.ProbeInterval }

// act takes the step st calls for, as the rotation's driver (or as the
// replica that may begin one).
func (r *Rotator) act(ctx context.Context, st State, now time.Time) (time.Duration, error) {
	switch next, prev := st.Next, st.Previous; {
	case next != nil && next.Registered.IsZero():
		return 0, r.register(ctx, st)
	case next != nil && next.Accepted.IsZero():
		return r.probe(ctx, st)
	case next != nil:
		return 0, r.switchTo(ctx, st)
	case prev != nil && prev.RetireAfter.IsZero():
		return 0, r.drain(ctx, st)
	case prev != nil && prev.Unregistered.IsZero():
		if now.Before(prev.RetireAfter) {
			return prev.RetireAfter.Sub(now), nil
		}
		return 0, r.unregister(ctx, st)
	case prev != nil:
		if at := prev.Unregistered.Add(r.cfg.DeleteAfter); now.Before(at) {
			return min(at.Sub(now), r.cfg.CheckInterval), nil
		}
		return 0, r.delete(ctx, st)
	}
	if !st.Requested.IsZero() {
		return 0, r.begin(ctx, st, now)
	}
	// Idle. The state is read again every probe interval, so that a
	// replica follows another's rotation within one; the JWKS (when the
	// key expires) only every check interval.
	due, err := r.dueAt(ctx, st, now)
	if err != nil {
		return 0, err
	}
	if r.cfg.Auto && !due.IsZero() && !now.Before(due) {
		return 0, r.begin(ctx, st, now)
	}
	if r.cfg.Auto && !due.IsZero() {
		return min(due.Sub(now), r.cfg.ProbeInterval), nil
	}
	return r.cfg.ProbeInterval, nil
}

// dueAt is due, read from the JWKS at most every check interval for the
// same current key.
func (r *Rotator) dueAt(ctx context.Context, st State, now time.Time) (time.Time, error) {
	r.mu.Lock()
	fresh := r.dueKID == st.Current.KID && now.Sub(r.dueRead) < r.cfg.CheckInterval
	due := r.dueCached
	r.mu.Unlock()
	if fresh {
		return due, nil
	}
	due, err := r.due(ctx, st)
	if err != nil {
		return time.Time{}, err
	}
	r.mu.Lock()
	r.dueKID, r.dueRead, r.dueCached = st.Current.KID, now, due
	r.mu.Unlock()
	return due, nil
}

// busy reports whether a rotation is under way or asked for.
func busy(st State) bool { return st.Next != nil || st.Previous != nil || !st.Requested.IsZero() }

// reload reads the state from the HSM (another replica may have moved
// it) and signs with its current key if this replica does not yet.
func (r *Rotator) reload(ctx context.Context) (State, error) {
	st, ok, err := r.hsm.LoadState()
	if err != nil {
		return State{}, fmt.Errorf("reading the rotation state from the HSM: %w", err)
	}
	r.mu.Lock()
	if !ok {
		st = r.state
	}
	signed := r.state.Current
	r.mu.Unlock()
	if st.Current.KID != signed.KID {
		if err := r.signing.Switch(st.Current, func() error { return r.record.Step(ctx, StepSwitched, st.Current, nil) }); err != nil {
			return State{}, fmt.Errorf("signing with key %s (kid %s), as the rotation state says: %w", st.Current.Label, st.Current.KID, err)
		}
		r.log.Info("key rotation: signing with the key the rotation state names", "environment", r.cfg.Environment, "kid", st.Current.KID, "key_label", st.Current.Label)
	}
	r.set(st)
	return st, nil
}

// set makes st the rotation's state in memory.
func (r *Rotator) set(st State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = st
}

// save stores st on the HSM and in memory, touched now.
func (r *Rotator) save(st State) error {
	st.Touched = r.now().UTC()
	if err := r.hsm.SaveState(st); err != nil {
		return fmt.Errorf("storing the rotation state on the HSM: %w", err)
	}
	r.set(st)
	return nil
}

// due reads when the current key's registration ends (the JWKS's expiry,
// or a year from its registration) and so when a rotation is due.
func (r *Rotator) due(ctx context.Context, st State) (time.Time, error) {
	set, err := r.registry.Keys(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the registered keys: %w", err)
	}
	expires := time.Time{}
	if k, ok := set.Kid(st.Current.KID); ok {
		expires = k.Expires()
	}
	if expires.IsZero() && !st.Current.Registered.IsZero() {
		expires = st.Current.Registered.Add(r.cfg.KeyLifetime)
	}
	var due time.Time
	if !expires.IsZero() {
		due = expires.Add(-r.cfg.LeadTime)
	}
	r.mu.Lock()
	r.status.CurrentExpires = expires
	r.status.NextRotation = time.Time{}
	if r.cfg.Auto {
		r.status.NextRotation = due
	}
	r.mu.Unlock()
	return due, nil
}

// begin makes the new key in the HSM.
func (r *Rotator) begin(ctx context.Context, st State, now time.Time) error {
	label := fmt.Sprintf("%s-%s", r.cfg.LabelPrefix, now.Format("20060102T150405Z"))
	pub, err := r.hsm.GenerateKey(label, r.cfg.Bits)
	if err != nil {
		return fmt.Errorf("making key %s in the HSM: %w", label, err)
	}
	kid, err := selfservice.Thumbprint(pub)
	if err != nil {
		return err
	}
	next := &Key{Label: label, KID: kid, Created: now}
	// Replicas with auto on may find a rotation due together: the one
	// whose state reaches the HSM first drives it. Look again, just
	// before storing ours (the window left is the write's own).
	if again, ok, err := r.hsm.LoadState(); err == nil && ok && again.Next != nil {
		r.log.Info("key rotation: another replica began this rotation; following it", "environment", r.cfg.Environment, "driver", again.Driver)
		return r.hsm.DeleteKey(label)
	}
	if err := r.record.Step(ctx, StepCreated, *next, nil); err != nil {
		// Unaccounted for, the key must not stay.
		return errors.Join(err, r.hsm.DeleteKey(label))
	}
	st.Next, st.Requested, st.Driver = next, time.Time{}, r.cfg.Instance
	r.log.Info("key rotation: a new key is made in the HSM", "environment", r.cfg.Environment, "key_label", label, "kid", kid)
	return r.save(st)
}

// register adds the new key to the JWKS beside the keys there.
func (r *Rotator) register(ctx context.Context, st State) error {
	next := *st.Next
	set, err := r.registry.Keys(ctx)
	if err != nil {
		return r.failed(ctx, StepRegistering, next, fmt.Errorf("reading the registered keys: %w", err))
	}
	if _, ok := set.Kid(next.KID); !ok {
		if len(set.Keys) >= selfservice.MaxKeys {
			return r.failed(ctx, StepRegistering, next, fmt.Errorf("%w: the integration holds %d keys already, Digdir's most: remove one no longer in use (`portvakt keys list`) so that %s can be registered", ErrSetFull, len(set.Keys), next.Label))
		}
		pub, err := r.hsm.PublicKey(next.Label)
		if err != nil {
			return fmt.Errorf("reading key %s from the HSM: %w", next.Label, err)
		}
		jwk, err := selfservice.NewJWK(pub, nil)
		if err != nil {
			return err
		}
		if err := r.record.Step(ctx, StepRegistering, next, nil); err != nil {
			return err
		}
		if _, err := r.registry.Replace(ctx, append(slices.Clip(set.Keys), jwk)); err != nil {
			return r.failed(ctx, StepRegistering, next, fmt.Errorf("registering key %s: %w", next.Label, err))
		}
	}
	next.Registered = r.now().UTC()
	if err := r.record.Step(ctx, StepRegistered, next, nil); err != nil {
		return err
	}
	st.Next = &next
	return r.save(st)
}

// probe asks Maskinporten for a token with the new key until it knows it.
func (r *Rotator) probe(ctx context.Context, st State) (time.Duration, error) {
	next := *st.Next
	err := r.signing.Probe(ctx, next)
	if errors.Is(err, ErrNotYetAccepted) {
		r.log.Debug("key rotation: Maskinporten does not know the new kid yet", "environment", r.cfg.Environment, "kid", next.KID)
		return r.cfg.ProbeInterval, nil
	}
	if err != nil {
		return 0, r.failed(ctx, StepAccepted, next, fmt.Errorf("probing key %s: %w", next.Label, err))
	}
	next.Accepted = r.now().UTC()
	if err := r.record.Step(ctx, StepAccepted, next, nil); err != nil {
		return 0, err
	}
	st.Next = &next
	return 0, r.save(st)
}

// switchTo signs new grants with the new key.
func (r *Rotator) switchTo(ctx context.Context, st State) error {
	next := *st.Next
	if err := r.signing.Switch(next, func() error { return r.record.Step(ctx, StepSwitched, next, nil) }); err != nil {
		return fmt.Errorf("switching to key %s: %w", next.Label, err)
	}
	old := st.Current
	old.Switched = r.now().UTC()
	st.Previous, st.Current, st.Next = &old, next, nil
	// In memory at once, so that reload does not switch again.
	r.set(st)
	r.log.Info("key rotation: new grants are signed with the new key", "environment", r.cfg.Environment, "kid", next.KID, "key_label", next.Label, "old_kid", old.KID)
	return r.save(st)
}

// drain waits for the old key's grants in flight and sets when the last
// token it got expires.
func (r *Rotator) drain(ctx context.Context, st State) error {
	prev := *st.Previous
	last, err := r.signing.LastExpiry(ctx, prev.KID)
	if err != nil {
		return fmt.Errorf("waiting for the old key's grants in flight: %w", err)
	}
	// Tokens this run did not see: got before it started, or by a
	// replica that follows the state and switches within two probe
	// intervals of the switch. Each lives at most the longest a token
	// does.
	unseen := prev.Switched.Add(2 * r.cfg.ProbeInterval)
	last = later(last, unseen.Add(r.cfg.MaxTokenLifetime))
	prev.RetireAfter = last.Add(retireMargin).UTC()
	st.Previous = &prev
	return r.save(st)
}

// unregister removes the old key from the JWKS.
func (r *Rotator) unregister(ctx context.Context, st State) error {
	prev := *st.Previous
	set, err := r.registry.Keys(ctx)
	if err != nil {
		return r.failed(ctx, StepUnregistering, prev, fmt.Errorf("reading the registered keys: %w", err))
	}
	if _, ok := set.Kid(prev.KID); ok {
		keep := slices.DeleteFunc(slices.Clone(set.Keys), func(k selfservice.JWK) bool { return k.Kid == prev.KID })
		if _, ok := set.Kid(st.Current.KID); !ok {
			return fmt.Errorf("the registered keys no longer hold the key in use (kid %s): the old key %s stays until they do", st.Current.KID, prev.Label)
		}
		if err := r.record.Step(ctx, StepUnregistering, prev, nil); err != nil {
			return err
		}
		if _, err := r.registry.Replace(ctx, keep); err != nil {
			return r.failed(ctx, StepUnregistering, prev, fmt.Errorf("removing key %s from the registered keys: %w", prev.Label, err))
		}
	}
	prev.Unregistered = r.now().UTC()
	if err := r.record.Step(ctx, StepUnregistered, prev, nil); err != nil {
		return err
	}
	st.Previous = &prev
	return r.save(st)
}

// delete removes the old key from the HSM.
func (r *Rotator) delete(ctx context.Context, st State) error {
	prev := *st.Previous
	if err := r.record.Step(ctx, StepDeleting, prev, nil); err != nil {
		return err
	}
	done := StepDeleted
	switch err := r.hsm.DeleteKey(prev.Label); {
	case errors.Is(err, ErrKeyInUse):
		// Another environment signs with it: it stays, and this rotation
		// is done with it.
		r.log.Info("key rotation: the old key stays in the HSM: it is in use elsewhere", "environment", r.cfg.Environment, "key_label", prev.Label, "reason", err.Error())
		done = StepKept
	case err != nil:
		return r.failed(ctx, StepDeleting, prev, fmt.Errorf("deleting key %s from the HSM: %w", prev.Label, err))
	}
	if err := r.record.Step(ctx, done, prev, nil); err != nil {
		return err
	}
	st.Previous = nil
	st.Driver = ""
	return r.save(st)
}

// ErrSetFull means the JWKS holds Digdir's most keys: a new one cannot be
// added until one is removed.
var ErrSetFull = errors.New("the registered keys are full")

// failed puts a failed step of k on record and returns err, the failure,
// its message beginning with the step.
func (r *Rotator) failed(ctx context.Context, step string, k Key, err error) error {
	err = fmt.Errorf("%s: %w", step, err)
	return errors.Join(err, r.record.Step(ctx, step, k, err))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ErrKeyInUse is HSM.DeleteKey's answer for a key something else signs
// with (another environment, the self-service API's tokens): it stays.
var ErrKeyInUse = errors.New("the key is in use elsewhere")
