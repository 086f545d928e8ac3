package requestid

import (
	"context"
	"regexp"
	"sync"
	"testing"
)

var idForm = regexp.MustCompile(`^[0-9a-f]{16}-[0-9a-f]+$`)

// Ids are unique among calls in flight at once, of the process's form,
// and reach everything that reads the call's context.
func TestNewIDs(t *testing.T) {
	const goroutines, each = 8, 1000
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				ctx, call := New(context.Background())
				if From(ctx) != call.ID || !idForm.MatchString(call.ID) {
					t.Errorf("id %q (From: %q)", call.ID, From(ctx))
				}
				mu.Lock()
				seen[call.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct ids of %d", len(seen), goroutines*each)
	}
}

// A call costs two allocations (its context, its id) where a UUID and
// context.WithValue cost four; the context still passes on what it wraps
// and is cancelled with it.
func TestNewIsCheap(t *testing.T) {
	type other struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), other{}, "kept"))
	if n := testing.AllocsPerRun(100, func() { New(parent) }); n > 2 {
		t.Errorf("New allocates %v times, want at most 2", n)
	}
	ctx, _ := New(parent)
	SetClient(ctx, "billing")
	SetIdentities(ctx, []string{"uid:1000"})
	c := ctx.Value(key{}).(*Call)
	if ClientFrom(ctx) != "billing" || len(c.Identities) != 1 || ctx.Value(other{}) != "kept" {
		t.Errorf("call %+v, parent's value %v", c, ctx.Value(other{}))
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	<-child.Done() // a context derived from the call's ends with its parent
	if From(context.Background()) != "" || ClientFrom(context.Background()) != "" {
		t.Error("a context without a call has an id or a client")
	}
}
