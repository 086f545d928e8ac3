// Package tokenservice is the gRPC TokenService: it answers who may have
// which Maskinporten token, and gets it. One request flows one way, and
// gettoken.go reads as that flow: identity, rate limit, request fields,
// policy decision, cache, and on a miss the grant, the HSM signature, its
// audit record and the token endpoint.
package tokenservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portvakt/portvakt/internal/tracing"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/rotation"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
)

// Environment is one Maskinporten environment the service serves tokens
// for: where to ask, as which integration, with which key.
type Environment struct {
	Config   maskinporten.Environment
	ClientID string
	// signing is the key new grants are signed with; SetSigning switches
	// it, and Signing reads it.
	signing atomic.Pointer[SigningKey]
	// successor is the key and certificate that take over, and when;
	// nil when none is waiting.
	successor atomic.Pointer[Succession]
	// signingGate is held shared from the choice of a grant's key until
	// its signature is on record, and exclusively by a rotation's switch
	// (SwitchSigning): every grant the old key signs is on the audit log
	// before the switch's record, and every grant of the new key after.
	// Shared holders do not wait for each other: signatures stay parallel.
	signingGate sync.RWMutex
	// uses tracks, per kid, the grants in flight and the last token got.
	uses      keyUses
	Discovery bool
	// Clock, when set, learns Maskinporten's clock from every answer to
	// the environment's grants, and a grant refused for its time (MP-130)
	// is made again once when the answer moved it. Builder should make
	// its grants on it (GrantOptions.Now = Clock.Now).
	Clock *maskinporten.Clock
	// SelfServiceURL is Digdir's self-service API for the environment's
	// integration (its registered keys); empty means none.
	SelfServiceURL string
	// SelfServiceKey signs the grants of tokens for the self-service API
	// (scopes idporten:dcr.…), which takes only tokens got with the
	// enterprise certificate (x5c); nil means Builder's, if it sends x5c.
	SelfServiceKey *SigningKey
	// Rotation is the environment's registered-key rotation; nil when
	// none is configured. Set before the service serves.
	Rotation *rotation.Rotator
}

// SigningKey is a key in the HSM and the grant builder that signs with it.
type SigningKey struct {
	Builder *maskinporten.GrantBuilder
	Signer  *signer.Signer
}

// Signing is the key the environment signs new grants with.
func (e *Environment) Signing() *SigningKey { return e.signing.Load() }

// Succession is a key (a renewed certificate) waiting to take over
// signing at At.
type Succession struct {
	Key *SigningKey
	At  time.Time
}

// Successor is the succession waiting, or nil.
func (e *Environment) Successor() *Succession { return e.successor.Load() }

// SetSuccessor puts s in waiting; nil withdraws it.
func (e *Environment) SetSuccessor(s *Succession) { e.successor.Store(s) }

// Succeed makes the waiting successor the signing key, if one waits and
// its time has come at now, and reports whether it did. record, when not
// nil, is the takeover's audit record, written as SwitchSigning writes a
// switch's: every grant of the old certificate before it, every grant of
// the new one after. If record fails, the successor waits on.
func (e *Environment) Succeed(now time.Time, record func(*Succession) error) (bool, error) {
	s := e.successor.Load()
	if s == nil || now.Before(s.At) {
		return false, nil
	}
	err := e.SwitchSigning(s.Key, func() error {
		if record == nil {
			return nil
		}
		return record(s)
	})
	if err != nil {
		return false, err
	}
	// Withdrawn once it signs: ListEnvironments never shows neither.
	return e.successor.CompareAndSwap(s, nil), nil
}

// SetSigning makes key the one new grants are signed with, at once and
// without a restart: a fetch under way finishes with the key it began
// with (it took the key once, at its start), and every fetch that begins
// after this call signs with key.
func (e *Environment) SetSigning(key *SigningKey) { e.signing.Store(key) }

// ErrNoSelfServiceKey means a token for the self-service API was asked in
// an environment that has no key to sign its grant with.
var ErrNoSelfServiceKey = errors.New("no key with an enterprise certificate for the self-service API's tokens")

// keyFor is the key that signs a grant: for the self-service API's
// scopes (selfService) the enterprise certificate's, for any other the
// environment's.
func (e *Environment) keyFor(selfService bool) (SigningKey, error) {
	own := *e.Signing()
	if !selfService {
		return own, nil
	}
	switch {
	case e.SelfServiceKey != nil:
		return *e.SelfServiceKey, nil
	case own.Builder.SendsCertificate():
		return own, nil
	}
	return SigningKey{}, fmt.Errorf("%w: environment %s signs with registered key %s, which has no certificate, and Digdir's self-service API takes only tokens got with the enterprise certificate; set environments[].self_service.key_label to that key",
		ErrNoSelfServiceKey, e.Config.Name, own.Builder.KeyID())
}

// selfServiceScope begins every scope of Digdir's self-service API.
const selfServiceScope = "idporten:dcr."

// isSelfService says whether scopes ask for the self-service API.
func isSelfService(scopes []string) bool {
	for _, sc := range scopes {
		if strings.HasPrefix(sc, selfServiceScope) {
			return true
		}
	}
	return false
}

// keyIsSelfService is isSelfService of a cache key's scopes, which are
// one string, spaces between them: read as it is, without splitting.
func keyIsSelfService(key tokencache.Key) bool {
	return strings.HasPrefix(key.Scopes, selfServiceScope) || strings.Contains(key.Scopes, " "+selfServiceScope)
}

// Policies gives the policy in force; *policy.Store is one.
type Policies interface {
	Current() *policy.Policy
}

// Options assemble a Service.
type Options struct {
	Environments []*Environment
	Policies     Policies
	Client       *maskinporten.Client
	// Discovery finds token endpoints for environments that use it.
	Discovery *maskinporten.Discovery
	Cache     tokencache.Options
	// Recorder receives the decisions and key uses for the audit; a
	// failure to record fails the request (no token without a record).
	Recorder Recorder
	// ObserveMaskinporten, when set, is told of every token request sent,
	// for metrics.
	ObserveMaskinporten func(env string, a maskinporten.Attempt)
	Logger              *slog.Logger
	// Tracer starts the spans of each request's steps; the zero Tracer
	// (tracing off) starts none.
	Tracer tracing.Tracer
	// SelfServiceHTTP reaches Digdir's self-service API (nil: the
	// default transport).
	SelfServiceHTTP *http.Client
}

// Service implements portvaktv1.TokenServiceServer.
type Service struct {
	portvaktv1.UnimplementedTokenServiceServer

	envs      map[string]*Environment
	envNames  []string
	policies  Policies
	client    *maskinporten.Client
	discovery *maskinporten.Discovery
	cache     *tokencache.Cache
	recorder  Recorder
	observer  func(env string, a maskinporten.Attempt)
	log       *slog.Logger
	tracer    tracing.Tracer
	keys      *KeyService
}

// New assembles the service.
func New(opts Options) (*Service, error) {
	if len(opts.Environments) == 0 {
		return nil, fmt.Errorf("no environment to serve")
	}
	if opts.Recorder == nil {
		// Fail closed: a service without a recorder would issue tokens no
		// audit knows of.
		return nil, fmt.Errorf("no recorder: every decision and key use must be recorded")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Discovery == nil {
		opts.Discovery = maskinporten.NewDiscovery(nil, 0)
	}
	s := &Service{
		envs: map[string]*Environment{}, policies: opts.Policies, client: opts.Client,
		discovery: opts.Discovery, recorder: opts.Recorder, observer: opts.ObserveMaskinporten, log: opts.Logger,
		tracer: opts.Tracer,
	}
	for _, e := range opts.Environments {
		if _, dup := s.envs[e.Config.Name]; dup {
			return nil, fmt.Errorf("environment %q configured twice", e.Config.Name)
		}
		s.envs[e.Config.Name] = e
		s.envNames = append(s.envNames, e.Config.Name)
	}
	sort.Strings(s.envNames)
	s.keys = &KeyService{s: s, http: opts.SelfServiceHTTP}
	s.discovery.ObserveDates(s.observeMetadataDate)
	s.cache = tokencache.New(s.fetch, opts.Cache)
	return s, nil
}

// observeMetadataDate gives the Date of an issuer's metadata to the clocks
// of the environments that discover their endpoint from it: their first
// grant is then made on Maskinporten's clock already.
func (s *Service) observeMetadataDate(issuer, date string, sent, received time.Time) {
	for _, e := range s.envs {
		if e.Discovery && e.Clock != nil && e.Config.Issuer == issuer {
			e.Clock.Observe(date, sent, received)
		}
	}
}

// CacheStats reports the token cache's counters, for metrics.
func (s *Service) CacheStats() tokencache.Stats { return s.cache.Stats() }

// MaskinportenDown reports whether the environment's circuit breaker is
// open: Maskinporten failed it too often of late, and only cached tokens
// are served until a probe gets through.
func (s *Service) MaskinportenDown(env string) bool { return s.cache.BreakerOpen(env) }

// Close stops the background refreshes and the fetches in flight, and
// waits for them until ctx ends. Calls after it get UNAVAILABLE.
func (s *Service) Close(ctx context.Context) error {
	err := s.cache.Close(ctx)
	// Nothing posts any more: the connections kept alive for it go.
	s.client.CloseIdleConnections()
	s.discovery.CloseIdleConnections()
	return err
}

// Environment is the environment named name, or nil.
func (s *Service) Environment(name string) *Environment { return s.envs[name] }

// Environments are the environments served, by name.
func (s *Service) Environments() []*Environment {
	envs := make([]*Environment, 0, len(s.envNames))
	for _, name := range s.envNames {
		envs = append(envs, s.envs[name])
	}
	return envs
}
