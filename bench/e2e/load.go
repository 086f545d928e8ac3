package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/portvakt/portvakt/client"
)

// dial opens n connections to the daemon over transport ("unix" or
// "mtls"), each its own ClientConn (its own HTTP/2 connection), with no
// retries: every failure counts.
func dial(w *world, transport string, n int) ([]*grpc.ClientConn, error) {
	target, creds := "unix://"+w.socket, insecure.NewCredentials()
	if transport == "mtls" {
		cfg, err := client.TLSConfig(client.Options{Address: w.tcpAddr, CertFile: w.certFile, KeyFile: w.keyFile, CAFile: w.caFile})
		if err != nil {
			return nil, err
		}
		target, creds = w.tcpAddr, credentials.NewTLS(cfg)
	}
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		c.Connect()
		conns[i] = c
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// call is one RPC by caller on connection conn.
type call func(ctx context.Context, conn int) error

// round is what one round of calls measured.
type round struct {
	calls     int
	elapsed   time.Duration
	latencies []time.Duration // sorted
}

func (r round) throughput() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// quantile is the latency below which a fraction q of the calls finished.
func (r round) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.latencies)))
	return r.latencies[min(i, len(r.latencies)-1)]
}

// timedRound runs callers goroutines, spread over conns connections,
// each calling as fast as it is answered until d has passed. Any error
// ends the round and is returned: the round is invalid.
func timedRound(ctx context.Context, conns, callers int, d time.Duration, c call) (round, error) {
	deadline := time.Now().Add(d)
	return runIndexed(ctx, callers, conns, func(ctx context.Context, conn int) (bool, error) {
		if !time.Now().Before(deadline) {
			return false, nil
		}
		return true, c(ctx, conn)
	})
}

// countedRound has callers goroutines make count calls between them, each
// call given its index in 0..count-1.
func countedRound(ctx context.Context, conns, callers, count int, c func(ctx context.Context, conn, i int) error) (round, error) {
	var next atomic.Int64
	return runIndexed(ctx, callers, conns, func(ctx context.Context, conn int) (bool, error) {
		i := int(next.Add(1)) - 1
		if i >= count {
			return false, nil
		}
		return true, c(ctx, conn, i)
	})
}

// runIndexed is the load loop: callers goroutines, caller k on connection
// k mod conns, each timing every call of its own into a slice made
// before the round starts.
func runIndexed(ctx context.Context, callers, conns int, step func(ctx context.Context, conn int) (bool, error)) (round, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lat := make([][]time.Duration, callers)
	per := max(1024, (1<<21)/callers)
	for k := range lat {
		lat[k] = make([]time.Duration, 0, per)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for k := range callers {
		wg.Go(func() {
			conn := k % conns
			for ctx.Err() == nil {
				t0 := time.Now()
				more, err := step(ctx, conn)
				if !more {
					return
				}
				if err != nil {
					cancel(fmt.Errorf("caller %d: %w", k, err))
					return
				}
				lat[k] = append(lat[k], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return round{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	return round{calls: len(all), elapsed: elapsed, latencies: all}, nil
}
