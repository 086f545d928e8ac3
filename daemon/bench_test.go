package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// BenchmarkCachedGetToken measures a cached GetToken against the health
// check, a unary RPC that does nothing, on the same server and transport:
// the ratio is the cost of identity, policy and cache on top of gRPC.
// Read it as a ratio from one run:
//
//	go test -run '^$' -bench CachedGetToken -count 6 ./daemon | benchstat -col /rpc -
func BenchmarkCachedGetToken(b *testing.B) {
	w := mptest.New(b, mptest.Options{})
	e := startDaemon(b, w)
	conns := map[string]*client.Client{"unix": e.unix, "mtls": e.mtls}
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	for _, transport := range []string{"unix", "mtls"} {
		c := conns[transport]
		if _, err := c.API().GetToken(context.Background(), req); err != nil { // warm the cache
			b.Fatal(err)
		}
		health := healthpb.NewHealthClient(connFor(b, e, transport))
		b.Run("transport="+transport+"/rpc=noop", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("transport="+transport+"/rpc=gettoken", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := c.API().GetToken(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if n := w.Sim.Stats().TokenRequests; n != 1 {
		b.Fatalf("%d token requests: the benchmark was meant to measure the cache", n)
	}
}

// connFor is a raw connection over the same transport as the client.
func connFor(b *testing.B, e *env, transport string) *grpc.ClientConn {
	if transport == "unix" {
		return connOf(b, e)
	}
	tlsConfig, err := client.TLSConfig(e.tlsOpts)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := grpc.NewClient(e.tlsOpts.Address, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}

// BenchmarkColdGetTokenAudit measures what the audit costs a GetToken that
// needs a new token (decision, signature and outcome records, each synced
// to disk before the next step) against the same with no_sync. Read the
// ratio from one run:
//
//	go test -run '^$' -bench ColdGetTokenAudit -count 6 ./daemon | benchstat -col /sync -
func BenchmarkColdGetTokenAudit(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			w := mptest.New(b, mptest.Options{})
			e := startDaemon(b, w, func(cfg string) string {
				return strings.Replace(cfg, "audit: {file: audit/audit.log}", fmt.Sprintf("audit: {file: audit/audit.log, no_sync: %v}", !sync), 1)
			})
			b.ResetTimer()
			for i := range b.N {
				req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d", i)}
				if _, err := e.unix.API().GetToken(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCachedGetTokenSealed measures cached GetTokens with the audit
// log sealed by HSM checkpoints (every 1000 records, the default) against
// the same unsealed, each on a daemon of its own. Read the ratio from one
// run:
//
//	go test -run '^$' -bench CachedGetTokenSealed -count 6 ./daemon | benchstat -col /seal -
func BenchmarkCachedGetTokenSealed(b *testing.B) {
	for _, seal := range []string{"off", "on"} {
		w := mptest.New(b, mptest.Options{NoSigner: true})
		w.Token.NewKey(b, "portvakt-audit")
		e := startDaemon(b, w, func(cfg string) string {
			if seal == "off" {
				return cfg
			}
			return strings.Replace(cfg, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, seal: {}}", 1)
		})
		req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
		if _, err := e.unix.API().GetToken(context.Background(), req); err != nil { // warm the cache
			b.Fatal(err)
		}
		b.Run("seal="+seal, func(b *testing.B) {
			b.ReportAllocs()
			before := auditBytes(b, e)
			for range b.N {
				if _, err := e.unix.API().GetToken(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// What each cached call adds to the audit log, checkpoints included.
			b.ReportMetric(float64(auditBytes(b, e)-before)/float64(b.N), "audit-B/op")
		})
		e.stop()
	}
}

// auditBytes is the size of the daemon's audit log, every file of it.
func auditBytes(b *testing.B, e *env) int64 {
	files, err := filepath.Glob(filepath.Join(e.dir, "audit", "*.log"))
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			n += st.Size()
		}
	}
	return n
}
