// Package requestid gives each call an id that its log lines, metrics and
// audit records share, so one request can be followed through all three,
// and carries the policy client the call was recognised as back to the
// interceptor that logs and counts it.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

type key struct{}

// Call is what is known of a call as it is handled. It is written by the
// handler and read by the interceptor after the handler returned, in the
// same goroutine, so it needs no lock.
type Call struct {
	ID string
	// Client is the policy client the caller was recognised as, once known.
	Client string
	// Identities are the caller's identities, when the handler read them
	// already (the interceptor reads them itself otherwise).
	Identities []string
}

// An id is this process's prefix and the call's number in the process,
// "3f9a0c1d2e4b5a69-2a". The prefix is 64 bits from crypto/rand drawn once
// at start, so ids are unique across replicas and restarts: two processes
// share a prefix with a chance of about n²/2⁶⁵ for n processes ever
// started. They are not unguessable, and need not be: an id only links a
// call's log line, audit records and span, it grants nothing, and a caller
// is told its own in x-request-id. A random UUID per call would cost a
// crypto/rand read (a syscall, or a lock) on every call.
var (
	prefix = newPrefix()
	calls  atomic.Uint64
)

func newPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program rather than return an error)
	return hex.EncodeToString(b[:])
}

// nextID is a new id, one allocation.
func nextID() string {
	var buf [len("0123456789abcdef-") + 16]byte
	b := append(buf[:0], prefix...)
	b = append(b, '-')
	b = strconv.AppendUint(b, calls.Add(1), 16)
	return string(b)
}

// callContext is a context carrying a call: the context and the call in
// one allocation, where context.WithValue and a *Call would be two.
type callContext struct {
	context.Context
	call Call
}

func (c *callContext) Value(k any) any {
	if k == (key{}) {
		return &c.call
	}
	return c.Context.Value(k)
}

// New returns ctx carrying a fresh call, and the call.
func New(ctx context.Context) (context.Context, *Call) {
	c := &callContext{Context: ctx, call: Call{ID: nextID()}}
	return c, &c.call
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

// SetIdentities records the caller's identities, read by the handler, so
// that the interceptor need not read them again, if ctx carries a call.
func SetIdentities(ctx context.Context, identities []string) {
	if c, ok := ctx.Value(key{}).(*Call); ok {
		c.Identities = identities
	}
}

// ClientFrom returns the call's policy client, or "" if not known.
func ClientFrom(ctx context.Context) string {
	if c, ok := ctx.Value(key{}).(*Call); ok {
		return c.Client
	}
	return ""
}
