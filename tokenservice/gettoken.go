package tokenservice

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/requestid"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// GetToken is the whole flow of a token request:
//
//	identity -> request fields -> policy decision (recorded) -> rate limit
//	-> cache -> on a miss: grant -> HSM signature -> record -> token endpoint
//	-> reply
//
// Every step that cannot be completed stops the request: no token is given
// to a caller who is not identified, not allowed, or not on record.
func (s *Service) GetToken(ctx context.Context, req *portvaktv1.GetTokenRequest) (*portvaktv1.GetTokenResponse, error) {
	caller, err := identity.FromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	r, err := s.parseRequest(req)
	if err != nil {
		return nil, toStatus(err)
	}

	pol := s.policies.Current()
	decision := pol.Decide(policy.Request{
		Identities:  caller.Identities,
		Environment: r.key.Environment,
		Scopes:      r.key.ScopeList(),
		ConsumerOrg: r.key.ConsumerOrg,
	})
	requestid.SetClient(ctx, decision.Client)
	if err := s.recorder.Decision(ctx, Decision{Caller: caller, Request: r.key, Decision: decision}); err != nil {
		return nil, s.unrecorded(ctx, err)
	}
	if !decision.Allowed {
		return nil, permissionDenied(decision)
	}
	if !pol.Allow(decision.Client) {
		// The decision on record says allow; the outcome says why no token.
		_ = s.recorder.Outcome(ctx, Outcome{Caller: caller, Request: r.key, Decision: decision, Err: ErrRateLimited})
		return nil, status.Errorf(codes.ResourceExhausted, "client %q is over its rate limit; retry later", decision.Client)
	}

	tok, err := s.cache.Get(ctx, r.key, r.minValidity)
	outcome := Outcome{Caller: caller, Request: r.key, Decision: decision, Token: tokenOrNil(tok, err), Err: err}
	if recErr := s.recorder.Outcome(ctx, outcome); recErr != nil && err == nil {
		return nil, s.unrecorded(ctx, recErr)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &portvaktv1.GetTokenResponse{
		AccessToken: tok.AccessToken.Reveal(),
		TokenType:   tok.TokenType,
		ExpiresAt:   timestamppb.New(tok.ExpiresAt),
		Scopes:      r.key.ScopeList(),
		Environment: r.key.Environment,
	}, nil
}

func tokenOrNil(tok maskinporten.Token, err error) *maskinporten.Token {
	if err != nil {
		return nil
	}
	return &tok
}
