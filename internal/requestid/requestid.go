// Package requestid gives each call an id that its log lines and audit
// records share, so one request can be followed through both.
package requestid

import (
	"context"

	"github.com/google/uuid"
)

type key struct{}

// New returns ctx carrying a fresh id, and the id.
func New(ctx context.Context) (context.Context, string) {
	id := uuid.NewString()
	return context.WithValue(ctx, key{}, id), id
}

// From returns the id in ctx, or "" if none.
func From(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}
