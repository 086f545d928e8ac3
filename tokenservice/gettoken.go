package tokenservice

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/tokencache"
)

// GetToken is the whole flow of a token request:
//
//	identity -> rate limit -> request fields -> policy decision
//	-> cached: decision and token on one record -> reply
//	-> on a miss: decision recorded -> grant -> HSM signature -> record
//	   -> token endpoint -> outcome recorded -> reply
//
// With tracing on, the policy decision, the cache lookup, the signature,
// each audit record and the POST are spans under the call's (tracing.go).
//
// Every step that cannot be completed stops the request: no token is given
// to a caller who is not identified, not allowed, or not on record. What a
// caller can make the daemon write is bounded: the rate limit comes before
// any record, and the fields are bounded before they reach one.
func (s *Service) GetToken(ctx context.Context, req *portvaktv1.GetTokenRequest) (*portvaktv1.GetTokenResponse, error) {
	// The steps before the cache are a function of their own, whose
	// frame is gone by the time the record is written: the cached path
	// stays within 8 KiB of stack down to the audit write, rather than
	// copying its stack to a larger one on nearly every call (see
	// recordPool in the daemon's recorder).
	d, r, err := s.admit(ctx, req)
	if err != nil {
		return nil, err
	}

	// Most calls are answered from the cache: one record holds both the
	// decision and the token it hands out, written before the reply.
	// The lookup's span ends with it; the record written on a hit is a
	// span of the call's own, as on a miss.
	lookupCtx, span := s.tracer.Start(ctx, spanCache)
	tok, hit, err := s.cache.GetCached(lookupCtx, r.key, r.minValidity, func(tok maskinporten.Token) error {
		d.Cached = &tok
		return s.recorder.Decision(ctx, d)
	})
	endLookup(span, r.key, hit, err)
	if err != nil {
		return nil, s.unrecorded(ctx, err)
	}
	if hit {
		s.traceOutcome(ctx, outcomeCached)
	} else if tok, err = s.issue(ctx, d, &r); err != nil {
		return nil, err
	}
	return &portvaktv1.GetTokenResponse{
		AccessToken: tok.AccessToken.Reveal(),
		TokenType:   tok.TokenType,
		ExpiresAt:   timestamppb.New(tok.ExpiresAt),
		Scopes:      r.scopes,
		Environment: r.key.Environment,
	}, nil
}

// admit is GetToken up to the cache: the caller identified, within its
// rate limit, the request's fields checked and the policy's decision on
// it; a denial is on record and is the error. The decision is on the
// heap (the recorder is an interface, so it would be either way), so
// that no copy of it by value is on the cached path's stack.
func (s *Service) admit(ctx context.Context, req *portvaktv1.GetTokenRequest) (*Decision, tokenRequest, error) {
	caller, err := identity.FromContext(ctx)
	if err != nil {
		return nil, tokenRequest{}, status.Error(codes.Unauthenticated, err.Error())
	}
	if err := checkIdentities(caller.Identities); err != nil {
		return nil, tokenRequest{}, status.Error(codes.Unauthenticated, err.Error())
	}
	requestid.SetIdentities(ctx, caller.Identities) // for the call's log line, read once
	pol := s.policies.Current()
	// The rate limit comes first, before the request is even read, so
	// that a flood (of valid requests or not, by a client or by a caller
	// the policy does not know) costs no more than the limit allows.
	if client, ok := pol.Admit(caller.Identities); !ok {
		requestid.SetClient(ctx, client)
		s.traceOutcome(ctx, outcomeRateLimited)
		return nil, tokenRequest{}, s.rateLimited(ctx, pol, caller, client)
	}
	// A request with a bad field is refused before the policy sees it and
	// is not recorded: nothing was decided, and the call's log line says
	// which field (never what it held).
	r, err := s.parseRequest(req)
	if err != nil {
		return nil, tokenRequest{}, toStatus(ctx, err)
	}
	if isSelfService(r.scopes) {
		// Refused here, not by a fetch: a fetch's failure would count
		// against the environment's circuit breaker.
		if _, err := s.envs[r.key.Environment].keyFor(true); err != nil {
			return nil, tokenRequest{}, toStatus(ctx, err)
		}
	}
	s.traceRequest(ctx, r.key)

	_, span := s.tracer.Start(ctx, spanPolicy)
	decision := pol.Decide(policy.Request{
		Identities:    caller.Identities,
		Environment:   r.key.Environment,
		Scopes:        r.scopes,
		ConsumerOrg:   r.key.ConsumerOrg,
		SystemUserOrg: r.key.SystemUserOrg,
	})
	endDecide(span, r.key, decision)
	requestid.SetClient(ctx, decision.Client)
	d := &Decision{Caller: caller, Request: r.key, Decision: decision}
	if !decision.Allowed {
		if err := s.recorder.Decision(ctx, d); err != nil {
			return nil, tokenRequest{}, s.unrecorded(ctx, err)
		}
		s.traceOutcome(ctx, outcomeDenied)
		return nil, tokenRequest{}, permissionDenied(decision)
	}
	return d, r, nil
}

// issue is GetToken on a miss: the decision on record, a token from the
// cache's fetch (a grant signed, its signature on record, the token
// endpoint's answer), and the outcome on record before the token is
// handed out. Its error is the call's status.
func (s *Service) issue(ctx context.Context, d *Decision, r *tokenRequest) (maskinporten.Token, error) {
	if err := s.recorder.Decision(ctx, d); err != nil {
		return maskinporten.Token{}, s.unrecorded(ctx, err)
	}
	tok, err := s.cache.Get(ctx, r.key, r.minValidity)
	outcome := Outcome{Caller: d.Caller, Request: r.key, Decision: d.Decision, Token: tokenOrNil(tok, err), Err: err}
	if recErr := s.recorder.Outcome(ctx, outcome); recErr != nil && err == nil {
		return maskinporten.Token{}, s.unrecorded(ctx, recErr)
	}
	if err != nil {
		return maskinporten.Token{}, toStatus(ctx, err)
	}
	s.traceOutcome(ctx, outcomeIssued)
	return tok, nil
}

// rateLimited tells the recorder of a call over its rate limit and says
// so to the caller.
func (s *Service) rateLimited(ctx context.Context, pol *policy.Policy, caller identity.Caller, client string) error {
	limit, _ := pol.RateLimit(client)
	msg := fmt.Sprintf("client %q is over its rate limit of %g calls per second; retry later", client, limit.PerSecond)
	if client == "" {
		limit = pol.UnknownRateLimit()
		msg = fmt.Sprintf("the callers no client of the policy claims are over the rate limit of %g calls per second they share; retry later", limit.PerSecond)
	}
	if err := s.recorder.RateLimited(ctx, RateLimited{Caller: caller, Client: client, Limit: limit}); err != nil {
		s.log.ErrorContext(ctx, "audit record of a rate-limited call could not be written", "error", err.Error())
	}
	return rateLimitedStatus(msg, limit.PerSecond)
}

func tokenOrNil(tok maskinporten.Token, err error) *maskinporten.Token {
	if err != nil {
		return nil
	}
	return &tok
}

// fetch is one attempt at a new token, the cache's Fetcher. The cache
// decides whether to attempt again (its back-off and its circuit breaker);
// within the attempt, a grant refused for its time (MP-130) by an answer
// that corrected the environment's clock is made again on the corrected
// clock and posted once more, never twice.
func (s *Service) fetch(ctx context.Context, key tokencache.Key) (maskinporten.Token, error) {
	env := s.envs[key.Environment]
	if env.Clock == nil {
		return s.fetchOnce(ctx, key)
	}
	before := env.Clock.Correction()
	tok, err := s.fetchOnce(ctx, key)
	if maskinporten.IsClockRefusal(err) && env.Clock.Moved(before) && ctx.Err() == nil {
		offset, _ := env.Clock.Offset()
		s.log.InfoContext(ctx, "grant refused for its time (MP-130); made again on Maskinporten's clock",
			"environment", env.Config.Name, "offset_seconds", offset.Seconds())
		tok, err = s.fetchOnce(ctx, key)
	}
	return tok, err
}

// fetchOnce is every step of a cache miss, in order, once. Each signs a new
// grant, since Maskinporten refuses a jti it has seen.
func (s *Service) fetchOnce(ctx context.Context, key tokencache.Key) (maskinporten.Token, error) {
	env := s.envs[key.Environment]
	return s.fetchWith(ctx, env, key, func() (SigningKey, error) { return env.keyFor(keyIsSelfService(key)) })
}

// fetchWith is fetchOnce with the key that pick chooses: the
// environment's, or a rotation's new key for its probe.
func (s *Service) fetchWith(ctx context.Context, env *Environment, key tokencache.Key, pick func() (SigningKey, error)) (maskinporten.Token, error) {
	// 1. Where to post: the configured token endpoint, or the one the
	// issuer's metadata names.
	endpoint, err := s.tokenEndpoint(ctx, env)
	if err != nil {
		return maskinporten.Token{}, err
	}

	// 2 and 3. The grant, signed in the HSM, and the key use on record
	// before the grant leaves.
	grant, use, err := s.signGrant(ctx, env, key, pick)
	if err != nil {
		return maskinporten.Token{}, err
	}
	defer use.inFlight.Add(-1)

	// 4. The grant posted to the token endpoint, once.
	postCtx, span := s.tracer.Start(ctx, spanPost)
	tok, attempt, err := s.client.Post(postCtx, endpoint, grant)
	endPost(span, env, endpoint, grant, attempt, err)
	if s.observer != nil && attempt.Posted() {
		s.observer(env.Config.Name, attempt)
	}
	if env.Clock != nil { // every answer, refusals included, dates Maskinporten's clock
		env.Clock.Observe(attempt.Date, attempt.Sent, attempt.Received)
	}
	if err == nil {
		use.got(tok.ExpiresAt)
	}
	return tok, err
}

// signGrant makes and signs the grant for key with the key pick chooses
// (maskinporten/grant.go, then signer/signer.go), and puts the key use on
// record, on disk: a signature nobody can account for is never sent. The
// grant counts as in flight for its kid until the caller's done with it.
// The environment's signing gate is held shared throughout (see
// Environment.signingGate).
func (s *Service) signGrant(ctx context.Context, env *Environment, key tokencache.Key, pick func() (SigningKey, error)) (maskinporten.Grant, *keyUse, error) {
	env.signingGate.RLock()
	defer env.signingGate.RUnlock()
	signing, err := pick()
	if err != nil {
		return maskinporten.Grant{}, nil, err
	}
	_, span := s.tracer.Start(ctx, spanSign)
	grant, err := signing.Builder.Build(maskinporten.GrantRequest{
		Issuer:      env.Config.Issuer,
		ClientID:    env.ClientID,
		Scopes:      key.ScopeList(),
		Resource:    key.Resource,
		ConsumerOrg: key.ConsumerOrg,
		SystemUser:  systemUser(key),
	})
	endSign(span, env, signing.Signer, grant, err)
	if err != nil {
		return maskinporten.Grant{}, nil, err
	}
	kid := signing.Builder.KeyID()
	if err := s.recorder.KeyUse(ctx, KeyUse{Environment: env, Signer: signing.Signer, KID: kid, Key: key, Grant: grant}); err != nil {
		return maskinporten.Grant{}, nil, fmt.Errorf("grant %s not sent: %w: %w", grant.JTI, ErrNotRecorded, err)
	}
	use := env.uses.of(kid)
	use.inFlight.Add(1)
	return grant, use, nil
}

// systemUser is the key's Altinn system user for the grant, nil for none.
func systemUser(key tokencache.Key) *maskinporten.SystemUser {
	if key.SystemUserOrg == "" {
		return nil
	}
	return &maskinporten.SystemUser{Org: key.SystemUserOrg, ExternalRef: key.SystemUserRef}
}

// tokenEndpoint is where the environment's grants are posted.
func (s *Service) tokenEndpoint(ctx context.Context, env *Environment) (string, error) {
	if !env.Discovery {
		return env.Config.TokenEndpoint, nil
	}
	return s.discovery.TokenEndpoint(ctx, env.Config)
}
