package tokenservice

import (
	"context"

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
	// Outcome is called when a GetToken ends, with the token's expiry or
	// the error. Its own failure is logged, not returned: the key use it
	// concerns is already on record.
	Outcome(ctx context.Context, o Outcome)
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
	Caller  identity.Caller
	Request tokencache.Key
	Token   *maskinporten.Token // nil on error
	Err     error
}

// NopRecorder records nothing.
type NopRecorder struct{}

func (NopRecorder) Decision(context.Context, Decision) error { return nil }
func (NopRecorder) KeyUse(context.Context, KeyUse) error     { return nil }
func (NopRecorder) Outcome(context.Context, Outcome)         {}
