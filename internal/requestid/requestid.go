// Package requestid gives each call an id that its log lines, metrics and
// audit records share, so one request can be followed through all three,
// and carries the policy client the call was recognised as back to the
// interceptor that logs and counts it.
package requestid

import (
	"context"

	"github.com/google/uuid"
)

type key struct{}

// Call is what is known of a call as it is handled. It is written by the
// handler and read by the interceptor after the handler returned, in the
// same goroutine, so it needs no lock.
type Call struct {
	ID string
	// Client is the policy client the caller was recognised as, once known.
	Client string
}

// New returns ctx carrying a fresh call, and the call.
func New(ctx context.Context) (context.Context, *Call) {
	c := &Call{ID: uuid.NewString()}
	return context.WithValue(ctx, key{}, c), c
}

// From returns the call's id, or "" if none.
func From(ctx context.Context) string {
	if c, ok := ctx.Value(key{}).(*Call); ok {
		return c.ID
	}
	return ""
}

// SetClient records the policy client of the call, if ctx carries one.
func SetClient(ctx context.Context, client string) {
	if c, ok := ctx.Value(key{}).(*Call); ok {
		c.Client = client
	}
}

// ClientFrom returns the call's policy client, or "" if not known.
func ClientFrom(ctx context.Context) string {
	if c, ok := ctx.Value(key{}).(*Call); ok {
		return c.Client
	}
	return ""
}
