package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/signer"
)

// bench runs the phases against one daemon.
type bench struct {
	o        options
	w        *world
	d        *daemonProcess
	progress io.Writer
	res      *results
	prof     *profiler
}

var (
	healthReq = &healthpb.HealthCheckRequest{}
	cachedReq = &portvaktv1.GetTokenRequest{Scopes: []string{scopeOwn}, Environment: environment}
)

// cached alternates no-op and cached GetToken rounds on each transport,
// and measures the audit's growth over the GetToken rounds.
func (b *bench) cached(ctx context.Context) error {
	var auditBytes, auditRecords, auditCalls int64
	var auditWritten float64
	requestsBefore := b.w.sim.Stats().TokenRequests
	for _, transport := range []string{"unix", "mtls"} {
		conns, err := dial(b.w, transport, 1)
		if err != nil {
			return err
		}
		defer closeAll(conns)
		health, api := healthpb.NewHealthClient(conns[0]), portvaktv1.NewTokenServiceClient(conns[0])
		if _, err := api.GetToken(ctx, cachedReq); err != nil { // fill the cache
			return fmt.Errorf("the first GetToken on %s: %w", transport, err)
		}
		noop := func(ctx context.Context, _ int) error { _, err := health.Check(ctx, healthReq); return err }
		get := func(ctx context.Context, _ int) error { _, err := api.GetToken(ctx, cachedReq); return err }
		// A short warm-up of each, not counted: connections, the daemon's
		// and this client's first allocations.
		for _, c := range []call{noop, get} {
			if _, err := timedRound(ctx, 1, b.o.callers, b.o.round/5, c); err != nil {
				return fmt.Errorf("warming up on %s: %w", transport, err)
			}
		}
		for r := range b.o.rounds {
			fmt.Fprintf(b.progress, "round %d/%d on %s: no-op, then cached GetToken (%d callers, %s each)\n", r+1, b.o.rounds, transport, b.o.callers, b.o.round)
			n, err := b.measure("noop-"+transport, func() (round, error) { return timedRound(ctx, 1, b.o.callers, b.o.round, noop) })
			if err != nil {
				return fmt.Errorf("no-op round %d on %s is invalid: %w", r+1, transport, err)
			}
			before, err := snapshotAudit(b.w.dir)
			if err != nil {
				return err
			}
			writesBefore, err := metric(b.w.metrics, auditWrites)
			if err != nil {
				return err
			}
			g, err := b.measure("cached-"+transport, func() (round, error) { return timedRound(ctx, 1, b.o.callers, b.o.round, get) })
			if err != nil {
				return fmt.Errorf("GetToken round %d on %s is invalid: %w", r+1, transport, err)
			}
			after, err := snapshotAudit(b.w.dir)
			if err != nil {
				return err
			}
			grownBytes, grownRecords, err := after.growthSince(before)
			if err != nil {
				return err
			}
			writesAfter, err := metric(b.w.metrics, auditWrites)
			if err != nil {
				return err
			}
			auditBytes, auditRecords, auditCalls = auditBytes+grownBytes, auditRecords+grownRecords, auditCalls+int64(g.calls)
			auditWritten += writesAfter - writesBefore
			fmt.Fprintf(b.progress, "  no-op %.0f/s, GetToken %.0f/s\n", n.perSecond, g.perSecond)
			b.res.noop[transport] = append(b.res.noop[transport], n)
			b.res.get[transport] = append(b.res.get[transport], g)
		}
	}
	if n := b.w.sim.Stats().TokenRequests - requestsBefore; n != 1 {
		return fmt.Errorf("the simulator saw %d token requests in the cached rounds, want 1: they did not measure the cache", n)
	}
	b.res.auditBytesPerCall = float64(auditBytes) / float64(auditCalls)
	b.res.auditRecordsPerCall = float64(auditRecords) / float64(auditCalls)
	b.res.auditRecordsPerWrite = float64(auditRecords) / max(auditWritten, 1)
	return nil
}

// peakRSS runs one round of many callers on many mTLS connections, then
// reads the daemon's high-water mark.
func (b *bench) peakRSS(ctx context.Context) error {
	fmt.Fprintf(b.progress, "peak RSS: %d callers on %d mTLS connections, cached GetToken, %s\n", b.o.rssCallers, b.o.rssConns, b.o.round)
	var err error
	if b.res.peakBefore, err = b.d.peakRSS(); err != nil { // the start's and the cached rounds'
		return err
	}
	conns, err := dial(b.w, "mtls", b.o.rssConns)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	apis := make([]portvaktv1.TokenServiceClient, len(conns))
	for i, c := range conns {
		apis[i] = portvaktv1.NewTokenServiceClient(c)
	}
	heapSaved := make(chan error, 1)
	r, err := b.measure("rss", func() (round, error) {
		go func() { // halfway, with every caller in flight
			time.Sleep(b.o.round / 2)
			if err := b.prof.heap("heap-rss"); err != nil {
				heapSaved <- err
				return
			}
			// The Go runtime's own account of it: goroutine stacks (a
			// call's, and the connections') and the heap in use.
			var err error
			if b.res.midStacks, err = metric(b.w.metrics, "go_memstats_stack_inuse_bytes"); err == nil {
				b.res.midHeap, err = metric(b.w.metrics, "go_memstats_heap_inuse_bytes")
			}
			heapSaved <- err
		}()
		return timedRound(ctx, len(conns), b.o.rssCallers, b.o.round, func(ctx context.Context, conn int) error {
			_, err := apis[conn].GetToken(ctx, cachedReq)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("the peak-RSS round is invalid: %w", err)
	}
	if err := <-heapSaved; err != nil {
		return err
	}
	b.res.rssRound = r
	// What the RSS is made of at the round's end: the heap, stacks and
	// the HSM library's memory (anonymous) against mapped files (the
	// binary and shared libraries' pages).
	if b.res.rssAnon, err = b.d.status("RssAnon"); err != nil {
		return err
	}
	if b.res.rssFile, err = b.d.status("RssFile"); err != nil {
		return err
	}
	b.res.peakRSS, err = b.d.peakRSS()
	return err
}

// cold alternates rounds of bare HSM signatures (signer.Sign in this
// process, same token and key) with rounds of GetToken for coldKeys keys
// never asked before, at the same concurrency and count.
func (b *bench) cold(ctx context.Context) error {
	s, err := signer.Open(signer.Config{
		Token: signer.TokenConfig{Module: b.w.token.Module, TokenLabel: b.w.token.Label, PIN: b.w.token.PIN},
		Key:   signer.KeyConfig{KeyLabel: keyLabel},
	})
	if err != nil {
		return fmt.Errorf("opening the eSeal key for the bare signatures: %w", err)
	}
	defer s.Close()
	digest := sha256.Sum256([]byte("a grant's signing input"))
	conns, err := dial(b.w, "unix", 1)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	api := portvaktv1.NewTokenServiceClient(conns[0])
	for r := range b.o.rounds {
		fmt.Fprintf(b.progress, "round %d/%d: %d bare HSM signatures, then %d cold keys (%d callers)\n", r+1, b.o.rounds, b.o.coldKeys, b.o.coldKeys, b.o.coldCallers)
		bare, err := b.measure("bare", func() (round, error) {
			return countedRound(ctx, 1, b.o.coldCallers, b.o.coldKeys, func(context.Context, int, int) error {
				_, err := s.Sign(nil, digest[:], crypto.SHA256)
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("bare-signature round %d is invalid: %w", r+1, err)
		}
		// Keys of this round alone: every consumer, with the round's resource.
		reqs := make([]*portvaktv1.GetTokenRequest, b.o.coldKeys)
		for i := range reqs {
			reqs[i] = &portvaktv1.GetTokenRequest{
				Scopes: []string{scopeDelegated}, Environment: environment,
				ConsumerOrg: b.w.consumers[i].String(), Resource: fmt.Sprintf("%s/cold/%d", resourceBase, r),
			}
		}
		resource := reqs[0].GetResource()
		cold, err := b.measure("cold", func() (round, error) {
			return countedRound(ctx, 1, b.o.coldCallers, b.o.coldKeys, func(ctx context.Context, _, i int) error {
				_, err := api.GetToken(ctx, reqs[i])
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("cold round %d is invalid: %w", r+1, err)
		}
		if got := b.w.sim.Stats().Resources[resource]; got != b.o.coldKeys {
			return fmt.Errorf("cold round %d made %d token requests for %d keys: it did not measure cold keys", r+1, got, b.o.coldKeys)
		}
		fmt.Fprintf(b.progress, "  bare signatures %.0f/s, cold tokens %.0f/s\n", bare.perSecond, cold.perSecond)
		b.res.bare = append(b.res.bare, bare)
		b.res.cold = append(b.res.cold, cold)
	}
	return nil
}

// measure runs the round name and summarises it with the CPU time the
// daemon and this process used meanwhile (and, with -profile, saves the
// daemon's CPU profile of a timed round).
func (b *bench) measure(name string, f func() (round, error)) (summary, error) {
	m := cpuMeter{pid: b.d.pid()}
	if err := m.start(); err != nil {
		return summary{}, err
	}
	// A counted round has no set length: its profile is of its first
	// few seconds, about as long as a timed round.
	wait := b.prof.round(name, b.o.round)
	r, err := f()
	if perr := wait(); err == nil && perr != nil {
		err = perr
	}
	if err != nil {
		return summary{}, err
	}
	s := summarise(r)
	s.usage, err = m.stop()
	return s, err
}

const (
	signCount   = "portvakt_hsm_sign_seconds_count"
	auditWrites = "portvakt_audit_writes_total"
)

// resourceBase begins the resource of every key the cold phases ask
// for: the simulator counts token requests by resource (Stats.Resources),
// so each phase counts the requests for its own keys alone.
const resourceBase = "https://bench.example"

// identicalCallers releases N callers at once for one key not cached,
// and counts the signatures and token requests they cost.
func (b *bench) identicalCallers(ctx context.Context) error {
	fmt.Fprintf(b.progress, "%d identical cold callers\n", b.o.identical)
	// At most 50 calls in flight per connection, under the daemon's
	// default of 100 streams, so that all of them reach it at once.
	conns, err := dial(b.w, "unix", (b.o.identical+49)/50)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	signsBefore, err := metric(b.w.metrics, signCount)
	if err != nil {
		return err
	}
	resource := resourceBase + "/identical"
	postsBefore := b.w.sim.Stats().Resources[resource]
	req := &portvaktv1.GetTokenRequest{Scopes: []string{scopeOwn}, Environment: environment, Resource: resource}
	start := make(chan struct{})
	errs := make(chan error, b.o.identical)
	var wg sync.WaitGroup
	for k := range b.o.identical {
		api := portvaktv1.NewTokenServiceClient(conns[k%len(conns)])
		wg.Go(func() {
			<-start
			if _, err := api.GetToken(ctx, req, grpc.WaitForReady(true)); err != nil {
				errs <- fmt.Errorf("identical caller %d: %w", k, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	signsAfter, err := metric(b.w.metrics, signCount)
	if err != nil {
		return err
	}
	b.res.identicalSigns = int(signsAfter - signsBefore)
	b.res.identicalPosts = b.w.sim.Stats().Resources[resource] - postsBefore
	return nil
}
