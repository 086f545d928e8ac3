package tokenservice

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portvakt/portvakt/orgno"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/syntax"
	"github.com/portvakt/portvakt/tokencache"
)

// The bounds of what a caller sends. Everything a caller controls ends up
// in audit records, which must stay small (under 4 KiB even for a request
// at every bound) whatever is sent, and in error messages and log lines,
// so each field is measured before it is read any further, and the
// messages about a field too long never repeat it.
const (
	// maxScopes bounds a request: Digdir recommends one scope per token.
	maxScopes = 10
	// maxScopeBytes bounds one scope. Maskinporten's scopes are
	// prefix:name and a few dozen characters long (svv:kjoretoy/ecoc).
	maxScopeBytes = 128
	// maxScopesBytes bounds the scopes together: they are in a decision
	// record twice, as themselves and in the policy's reason.
	maxScopesBytes = 512
	// maxResourceBytes bounds resource, an API's audience URL.
	maxResourceBytes = 256
	// maxEnvironmentBytes bounds environment, the name of one of the
	// daemon's environments, before it is looked up and quoted back.
	maxEnvironmentBytes = 64
	// maxConsumerOrgBytes bounds consumer_org, and system_user.org, nine
	// digits when valid, before it is parsed and quoted back.
	maxConsumerOrgBytes = 32
	// The bound of system_user.external_ref is syntax.MaxExternalRefBytes
	// (128): printable ASCII, checked by syntax.CheckExternalRef.
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
	// scopes are the key's as a list (sorted, without repeats): decided
	// on and returned. A request of one scope, the usual, shares its
	// message's slice.
	scopes []string
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
	total := 0
	for i, sc := range scopes {
		if len(sc) > maxScopeBytes {
			return tokenRequest{}, &fieldError{"scopes", fmt.Sprintf("scope %d is %d bytes long; a scope has at most %d", i+1, len(sc), maxScopeBytes)}
		}
		total += len(sc)
	}
	if total > maxScopesBytes {
		return tokenRequest{}, &fieldError{"scopes", fmt.Sprintf("the scopes are %d bytes long together; at most %d", total, maxScopesBytes)}
	}
	for _, sc := range scopes {
		if err := syntax.CheckScope(sc); err != nil {
			return tokenRequest{}, &fieldError{"scopes", err.Error()}
		}
	}
	if n := len(req.GetEnvironment()); n > maxEnvironmentBytes {
		return tokenRequest{}, &fieldError{"environment", fmt.Sprintf("%d bytes long; an environment's name has at most %d: give one of %s", n, maxEnvironmentBytes, strings.Join(s.envNames, ", "))}
	}
	env, err := s.environment(req.GetEnvironment())
	if err != nil {
		return tokenRequest{}, err
	}
	if c := req.GetConsumerOrg(); len(c) > maxConsumerOrgBytes {
		return tokenRequest{}, &fieldError{"consumer_org", fmt.Sprintf("%d bytes long; at most %d (an organisation number is 9 digits)", len(c), maxConsumerOrgBytes)}
	} else if c != "" {
		if _, err := orgno.Parse(c); err != nil {
			return tokenRequest{}, &fieldError{"consumer_org", err.Error()}
		}
	}
	behalf := tokencache.OnBehalfOf{ConsumerOrg: req.GetConsumerOrg()}
	if su := req.GetSystemUser(); su != nil {
		if behalf.ConsumerOrg != "" {
			return tokenRequest{}, &fieldError{"system_user", "give consumer_org (delegation) or system_user (an Altinn system user), not both: Maskinporten takes no grant with both"}
		}
		if behalf.SystemUserOrg, behalf.SystemUserRef, err = parseSystemUser(su); err != nil {
			return tokenRequest{}, err
		}
	}
	resource := req.GetResource()
	if len(resource) > maxResourceBytes {
		return tokenRequest{}, &fieldError{"resource", fmt.Sprintf("%d bytes long; at most %d", len(resource), maxResourceBytes)}
	}
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
	if len(scopes) > 1 {
		scopes = slices.Compact(slices.Sorted(slices.Values(scopes))) // as the key has them
	}
	return tokenRequest{
		env:         env,
		key:         tokencache.NewKey(env.Config.Name, env.ClientID, scopes, resource, behalf),
		minValidity: minValidity,
		scopes:      scopes,
	}, nil
}

// parseSystemUser checks a request's system user: the customer's
// organisation number and, when given, the external reference.
func parseSystemUser(su *portvaktv1.SystemUser) (org, ref string, err error) {
	org, ref = su.GetOrg(), su.GetExternalRef()
	switch {
	case org == "":
		return "", "", &fieldError{"system_user.org", "give the customer's organisation number, nine digits such as 313427137"}
	case len(org) > maxConsumerOrgBytes:
		return "", "", &fieldError{"system_user.org", fmt.Sprintf("%d bytes long; at most %d (an organisation number is 9 digits)", len(org), maxConsumerOrgBytes)}
	}
	if _, err := orgno.Parse(org); err != nil {
		return "", "", &fieldError{"system_user.org", err.Error()}
	}
	if ref != "" {
		if err := syntax.CheckExternalRef(ref); err != nil {
			return "", "", &fieldError{"system_user.external_ref", err.Error()}
		}
	}
	return org, ref, nil
}

// checkIdentities bounds the caller's identities, which every record of
// its calls names. A Unix peer's are short; a certificate's are what its CA
// put in it. A caller with an identity over the bound is refused before
// anything is recorded or rate limited: no policy can name it.
func checkIdentities(ids []string) error {
	for _, id := range ids {
		if len(id) > syntax.MaxIdentityBytes {
			return fmt.Errorf("the caller's identity is %d bytes long; Portvakt takes identities of at most %d", len(id), syntax.MaxIdentityBytes)
		}
	}
	return nil
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
