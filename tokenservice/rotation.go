package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/tokencache"
)

// keyUse is what the daemon knows of one kid's grants: how many are in
// flight, and when the last token one of them got expires.
type keyUse struct {
	inFlight   atomic.Int64
	lastExpiry atomic.Int64 // Unix nanoseconds; 0 for none
}

// got notes a token a grant of the key got.
func (u *keyUse) got(expires time.Time) {
	ns := expires.UnixNano()
	for {
		old := u.lastExpiry.Load()
		if old >= ns || u.lastExpiry.CompareAndSwap(old, ns) {
			return
		}
	}
}

// keyUses are an environment's keyUse by kid; the zero value is ready.
type keyUses struct {
	mu   sync.Mutex
	byID map[string]*keyUse
}

func (k *keyUses) of(kid string) *keyUse {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byID == nil {
		k.byID = map[string]*keyUse{}
	}
	u := k.byID[kid]
	if u == nil {
		u = &keyUse{}
		k.byID[kid] = u
	}
	return u
}

// SwitchSigning makes key the one new grants are signed with, as
// SetSigning does, with record written between: it waits for the grants
// whose key was chosen already to be on record, writes record (the
// switch's audit record), and switches, holding back every later grant
// until it has. If record fails, nothing is switched.
func (e *Environment) SwitchSigning(key *SigningKey, record func() error) error {
	e.signingGate.Lock()
	defer e.signingGate.Unlock()
	if err := record(); err != nil {
		return err
	}
	e.SetSigning(key)
	return nil
}

// drainInterval is how often LastExpiry looks at the grants in flight.
const drainInterval = 10 * time.Millisecond

// LastExpiry waits until no grant with kid is in flight, and returns when
// the last token such a grant got expires; zero when this run saw none.
func (e *Environment) LastExpiry(ctx context.Context, kid string) (time.Time, error) {
	u := e.uses.of(kid)
	for u.inFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(drainInterval):
		}
	}
	ns := u.lastExpiry.Load()
	if ns == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, ns), nil
}

// The daemon's own requests: a key rotation's, on record as the caller
// "internal:key-rotation" of policy client "portvakt". They pass no
// policy: the operator allowed them by configuring the rotation.
const (
	rotationPart   = "key-rotation"
	rotationClient = "portvakt"
	rotationReason = "the daemon's own key rotation (environments[].rotation)"
)

// RotationContext is ctx as the daemon's rotation acts in: a request id
// of its own, and the daemon as the caller, for the audit.
func RotationContext(ctx context.Context) context.Context { return internalContext(ctx, rotationPart) }

// internalContext is ctx for a part of the daemon acting on its own: a
// request id of its own, and the daemon, as that part, the caller of
// policy client rotationClient.
func internalContext(ctx context.Context, part string) context.Context {
	ctx, call := requestid.New(identity.Internal(ctx, part))
	call.Client = rotationClient
	return ctx
}

// ownTokenValidity is what is left of an OwnToken's validity at least:
// enough for the API call it is for, so that the API does not refuse a
// token that expired on the way.
const ownTokenValidity = time.Second

// OwnToken is a token for scopes in env for the daemon's own use (a
// rotation's calls to the self-service API): cached, signed and recorded
// as a caller's, with the daemon as the caller. ctx is a RotationContext.
func (s *Service) OwnToken(ctx context.Context, env string, scopes ...string) (secret.Value, error) {
	// The key a caller's request for the same scopes has: one cache entry.
	r, err := s.parseRequest(&portvaktv1.GetTokenRequest{Scopes: scopes, Environment: env})
	if err != nil {
		return secret.Value{}, err
	}
	tok, err := s.recordedOwn(ctx, r.key, rotationReason, false, func() (maskinporten.Token, error) {
		return s.cache.Get(ctx, r.key, ownTokenValidity)
	})
	if err != nil {
		return secret.Value{}, err
	}
	return tok.AccessToken, nil
}

// recordedOwn is a token the daemon gets for itself, on record as a
// caller's token is: the decision (allowed: the operator configured what
// asks for it, for the reason given), fetch's signature records, and the
// outcome, Maskinporten's answer, whatever it was; discarded for a token
// nobody is given (a probe's). ctx is a RotationContext. A decision or a
// token not on record is an error wrapping ErrNotRecorded.
func (s *Service) recordedOwn(ctx context.Context, key tokencache.Key, reason string, discarded bool, fetch func() (maskinporten.Token, error)) (maskinporten.Token, error) {
	caller, err := identity.FromContext(ctx)
	if err != nil || caller.Transport != identity.TransportInternal {
		return maskinporten.Token{}, errors.New("the daemon's own token outside the daemon's own context")
	}
	decision := policy.Decision{Allowed: true, Client: rotationClient, Reason: reason}
	if err := s.recorder.Decision(ctx, &Decision{Caller: caller, Request: key, Decision: decision}); err != nil {
		return maskinporten.Token{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	tok, err := fetch()
	outcome := Outcome{Caller: caller, Request: key, Decision: decision, Token: tokenOrNil(tok, err), Err: err, Discarded: discarded}
	if recErr := s.recorder.Outcome(ctx, outcome); recErr != nil && err == nil {
		return maskinporten.Token{}, fmt.Errorf("%w: %w", ErrNotRecorded, recErr)
	}
	return tok, err
}

// probeReason is the decision's reason of a rotation's probe.
const probeReason = "the daemon's own key rotation (environments[].rotation): a probe of whether Maskinporten accepts the new key"

// Probe signs a grant for scope with key, a rotation's new key, posts it
// and discards the token: nil when Maskinporten accepted the key; an
// error wrapping ErrUnknownKID while it does not know the kid yet. The
// probe is on record as a caller's request is: its decision, its
// signature and Maskinporten's answer, a token or a refusal, so that no
// signature's grant is left without its fate. ctx is a RotationContext.
func (s *Service) Probe(ctx context.Context, env *Environment, key *SigningKey, scope string) error {
	req := tokencache.NewKey(env.Config.Name, env.ClientID, []string{scope}, "", tokencache.OnBehalfOf{})
	_, err := s.recordedOwn(ctx, req, probeReason, true, func() (maskinporten.Token, error) {
		return s.fetchWith(ctx, env, req, func() (SigningKey, error) { return *key, nil })
	})
	var mp *maskinporten.Error
	if errors.As(err, &mp) && mp.MPCode == unknownKIDCode {
		return fmt.Errorf("%w: %w", ErrUnknownKID, err)
	}
	return err
}

// unknownKIDCode is Maskinporten's refusal of a grant whose kid it does
// not know (invalid_client, "Client not found" or "kid … is not
// registered"), as while a new registration has not reached it.
const unknownKIDCode = "MP-100"

// ErrUnknownKID means Maskinporten does not know a grant's kid.
var ErrUnknownKID = errors.New("Maskinporten does not know the kid yet")

// RecordRotationStep puts a step of env's rotation on record as the
// daemon's own key change; a failed step (err) is recorded with its
// failure outcome and message. ctx is a RotationContext.
func (s *Service) RecordRotationStep(ctx context.Context, env, step, label, kid string, err error) error {
	caller, _ := identity.FromContext(ctx)
	change := KeyChange{Caller: caller, Client: rotationClient, Environment: env, KeyLabel: label, KID: kid, Step: step, Err: err}
	if err != nil {
		change.Step = Classify(ctx, err).Outcome
	}
	return s.recorder.KeyChange(ctx, change)
}

// The daemon's own part that hands signing to a renewed certificate.
const renewalPart = "certificate-renewal"

// RenewalContext is ctx as the daemon's certificate takeover acts in: a
// request id of its own, and the daemon as the caller.
func RenewalContext(ctx context.Context) context.Context { return internalContext(ctx, renewalPart) }

// StepTakeover is the outcome of the key record of a renewed
// certificate taking over an environment's signing.
const StepTakeover = "certificate_takeover"

// RecordTakeover puts the successor's takeover of env's signing on record
// as the daemon's own key change, naming the successor's key and
// certificate, and its time; atStart says the time came while the daemon
// was down, so that it signs from this start. ctx is a RenewalContext.
func (s *Service) RecordTakeover(ctx context.Context, env string, next *Succession, atStart bool) error {
	caller, _ := identity.FromContext(ctx)
	reason := fmt.Sprintf("the successor's time came at %s", next.At.UTC().Format(time.RFC3339))
	if atStart {
		reason += ", while the daemon was down: it signs from this start"
	}
	return s.recorder.KeyChange(ctx, KeyChange{
		Caller: caller, Client: rotationClient, Environment: env,
		KeyLabel: next.Key.Signer.KeyLabel(), Signer: next.Key.Signer, Step: StepTakeover, Reason: reason,
	})
}
