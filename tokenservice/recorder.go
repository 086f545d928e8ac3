package tokenservice

import (
	"context"
	"errors"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokencache"
)

// Recorder is told of every policy decision and every use of the key. An
// error from it fails the request closed: a token that cannot be
// accounted for is not handed out.
type Recorder interface {
	// RateLimited is called for every GetToken refused by a rate limit,
	// before anything else is done for it. The recorder may count such
	// calls rather than record each: they are what a flooding caller makes
	// most of. Its error is logged, not returned: the call is refused.
	RateLimited(ctx context.Context, r RateLimited) error
	// Decision is called once per GetToken that was admitted by the rate
	// limit and whose request is valid, allowed or not. For a request
	// answered from the cache, d.Cached is the token, the call ends there
	// and Outcome is not called: one record says both. d is the caller's,
	// not kept (a pointer: the cached path's stack stays small).
	Decision(ctx context.Context, d *Decision) error
	// KeyUse is called after each grant is signed and before it is sent.
	KeyUse(ctx context.Context, k KeyUse) error
	// KeyChange is called for each step RegisterKey takes with an
	// environment's keys: after a key is made in the HSM, before the set
	// holding it is sent to Digdir (a change nobody can account for is
	// never sent), and with how that ended. An error stops the request.
	KeyChange(ctx context.Context, k KeyChange) error
	// Outcome is called when a GetToken that was not answered from the
	// cache ends, before the reply, with the token or the error. When a
	// token was obtained and its outcome cannot be recorded, the caller
	// does not get the token.
	Outcome(ctx context.Context, o Outcome) error
}

// RateLimited is a call refused by a rate limit.
type RateLimited struct {
	Caller identity.Caller
	// Client is the client whose rate_limit refused the call, or "" for a
	// caller no client claims, refused by the limit such callers share.
	Client string
	Limit  policy.RateLimit
}

// Decision is a policy decision on a request.
type Decision struct {
	Caller   identity.Caller
	Request  tokencache.Key
	Decision policy.Decision
	// Cached, when set, is the token the cache held for an allowed
	// request: the request is answered with it, once this decision is on
	// record. Its GrantJTI names the signature that obtained it.
	Cached *maskinporten.Token
}

// The steps of a key change, its record's outcome.
const (
	KeyCreated     = "created"     // made in the HSM
	KeyRegistering = "registering" // the set with it about to be sent to Digdir
	KeyRegistered  = "registered"  // Digdir holds it
)

// KeyChange is one step with an environment's keys.
type KeyChange struct {
	Caller      identity.Caller
	Client      string // the policy client the caller is
	Environment string
	KeyLabel    string
	KID         string
	// Signer, when set, is the key concerned, for its certificate's
	// fingerprint on the record.
	Signer *signer.Signer
	// Step is one of KeyCreated, KeyRegistering, KeyRegistered, or a
	// failure outcome of Classify with Err.
	Step string
	Err  error
	// Reason, when set, says why the change happened (a successor's
	// takeover: when, and whether at the start).
	Reason string
}

// KeyUse is one signature by the HSM key.
type KeyUse struct {
	Environment *Environment
	// Signer is the key that signed the grant.
	Signer *signer.Signer
	// KID is the grant's kid header: the registered key it names; ""
	// for a grant that names its key by x5c alone.
	KID   string
	Key   tokencache.Key
	Grant maskinporten.Grant
}

// Outcome is how a GetToken ended.
type Outcome struct {
	Caller   identity.Caller
	Request  tokencache.Key
	Decision policy.Decision
	// Token is nil on error. Its GrantJTI links the outcome to the
	// signature that obtained it, whether for this request or an earlier one.
	Token *maskinporten.Token
	Err   error
	// Discarded says the token is thrown away, not handed to anyone (a
	// rotation's probe): on record, but not counted as handed out.
	Discarded bool
}

// ErrNotRecorded means the audit could not record a key use or outcome:
// the request is failed rather than leave a use of the key unaccounted for.
var ErrNotRecorded = errors.New("the audit log could not record the request")
