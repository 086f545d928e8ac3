package tokenservice

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/orgno"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/tokencache"
)

const (
	// maxScopes bounds a request: Digdir recommends one scope per token.
	maxScopes = 10
	// maxMinValidity bounds min_validity: no Maskinporten token lives
	// longer than a few hours, so more can never be met.
	maxMinValidity = 2 * time.Hour
)

// fieldError is a bad request field: which, and why.
type fieldError struct {
	field, problem string
}

func (e *fieldError) Error() string { return e.field + ": " + e.problem }

// tokenRequest is a validated GetTokenRequest.
type tokenRequest struct {
	env         *Environment
	key         tokencache.Key
	minValidity time.Duration
}

// parseRequest checks every field and resolves the environment and the
// default resource; errors are *fieldError.
func (s *Service) parseRequest(req *portvaktv1.GetTokenRequest) (tokenRequest, error) {
	scopes := req.GetScopes()
	if len(scopes) == 0 {
		return tokenRequest{}, &fieldError{"scopes", "give at least one scope, such as svv:kjoretoy/ecoc"}
	}
	if len(scopes) > maxScopes {
		return tokenRequest{}, &fieldError{"scopes", fmt.Sprintf("%d scopes; at most %d in one token", len(scopes), maxScopes)}
	}
	for _, sc := range scopes {
		if err := maskinporten.ValidateScope(sc); err != nil {
			return tokenRequest{}, &fieldError{"scopes", err.Error()}
		}
	}
	env, err := s.environment(req.GetEnvironment())
	if err != nil {
		return tokenRequest{}, err
	}
	if c := req.GetConsumerOrg(); c != "" {
		if _, err := orgno.Parse(c); err != nil {
			return tokenRequest{}, &fieldError{"consumer_org", err.Error()}
		}
	}
	resource := req.GetResource()
	if resource == "" {
		resource = env.Config.Resource
	} else if u, err := url.Parse(resource); err != nil || !u.IsAbs() || u.Host == "" {
		return tokenRequest{}, &fieldError{"resource", fmt.Sprintf("%q is not an absolute URL, such as https://www.vegvesen.no", resource)}
	}
	var minValidity time.Duration
	if mv := req.GetMinValidity(); mv != nil {
		if err := mv.CheckValid(); err != nil {
			return tokenRequest{}, &fieldError{"min_validity", err.Error()}
		}
		minValidity = mv.AsDuration()
		if minValidity < 0 || minValidity > maxMinValidity {
			return tokenRequest{}, &fieldError{"min_validity", fmt.Sprintf("%s: give 0 to %s", minValidity, maxMinValidity)}
		}
	}
	return tokenRequest{
		env:         env,
		key:         tokencache.NewKey(env.Config.Name, env.ClientID, scopes, resource, req.GetConsumerOrg()),
		minValidity: minValidity,
	}, nil
}

// environment resolves a requested environment name. With one environment
// configured the name may be left out.
func (s *Service) environment(name string) (*Environment, error) {
	if name == "" {
		if len(s.envNames) == 1 {
			return s.envs[s.envNames[0]], nil
		}
		return nil, &fieldError{"environment", "give one of " + strings.Join(s.envNames, ", ")}
	}
	env, ok := s.envs[name]
	if !ok {
		return nil, &fieldError{"environment", fmt.Sprintf("unknown environment %q; this daemon serves %s", name, strings.Join(s.envNames, ", "))}
	}
	return env, nil
}
