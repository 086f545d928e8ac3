package tokenservice

import (
	"context"
	"fmt"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/tokencache"
)

// fetch is one attempt at a new token, the cache's Fetcher: every step of
// a cache miss, in order. The cache decides whether to attempt again (its
// back-off and its circuit breaker), and each attempt signs a new grant,
// since Maskinporten refuses a jti it has seen.
func (s *Service) fetch(ctx context.Context, key tokencache.Key) (maskinporten.Token, error) {
	env := s.envs[key.Environment]

	// 1. Where to post: the configured token endpoint, or the one the
	// issuer's metadata names.
	endpoint, err := s.tokenEndpoint(ctx, env)
	if err != nil {
		return maskinporten.Token{}, err
	}

	// 2. The grant, signed in the HSM (maskinporten/grant.go, then
	// signer/signer.go).
	grant, err := env.Builder.Build(maskinporten.GrantRequest{
		Issuer:      env.Config.Issuer,
		ClientID:    env.ClientID,
		Scopes:      key.ScopeList(),
		Resource:    key.Resource,
		ConsumerOrg: key.ConsumerOrg,
	})
	if err != nil {
		return maskinporten.Token{}, err
	}

	// 3. The key use on record, on disk, before the grant leaves: a
	// signature nobody can account for is never sent.
	if err := s.recorder.KeyUse(ctx, KeyUse{Environment: env, Key: key, Grant: grant}); err != nil {
		return maskinporten.Token{}, fmt.Errorf("grant %s not sent: %w: %w", grant.JTI, ErrNotRecorded, err)
	}

	// 4. The grant posted to the token endpoint, once.
	tok, attempt, err := s.client.Post(ctx, endpoint, grant)
	if s.observer != nil && attempt.Duration > 0 { // it was posted
		s.observer(env.Config.Name, attempt)
	}
	return tok, err
}

// tokenEndpoint is where the environment's grants are posted.
func (s *Service) tokenEndpoint(ctx context.Context, env *Environment) (string, error) {
	if !env.Discovery {
		return env.Config.TokenEndpoint, nil
	}
	return s.discovery.TokenEndpoint(ctx, env.Config)
}
