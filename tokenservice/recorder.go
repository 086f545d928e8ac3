package tokenservice

import (
	"context"
	"errors"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/tokencache"
)

// Recorder is told of every policy decision and every use of the key. An
// error from it fails the request closed: a token that cannot be
// accounted for is not handed out.
type Recorder interface {
	// Decision is called once per GetToken, allowed or not.
	Decision(ctx context.Context, d Decision) error
	// KeyUse is called after each grant is signed and before it is sent.
	KeyUse(ctx context.Context, k KeyUse) error
	// Outcome is called when a GetToken ends, before the reply, with the
	// token or the error. When a token was obtained and its outcome cannot
	// be recorded, the caller does not get the token.
	Outcome(ctx context.Context, o Outcome) error
}

// Decision is a policy decision on a request.
type Decision struct {
	Caller   identity.Caller
	Request  tokencache.Key
	Decision policy.Decision
}

// KeyUse is one signature by the HSM key.
type KeyUse struct {
	Environment *Environment
	Key         tokencache.Key
	Grant       maskinporten.Grant
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
}

// ErrRateLimited is the outcome of a request refused by its client's rate
// limit.
var ErrRateLimited = errors.New("over the client's rate limit")

// ErrNotRecorded means the audit could not record a key use or outcome:
// the request is failed rather than leave a use of the key unaccounted for.
var ErrNotRecorded = errors.New("the audit log could not record the request")

// NopRecorder records nothing.
type NopRecorder struct{}

func (NopRecorder) Decision(context.Context, Decision) error { return nil }
func (NopRecorder) KeyUse(context.Context, KeyUse) error     { return nil }
func (NopRecorder) Outcome(context.Context, Outcome) error   { return nil }
