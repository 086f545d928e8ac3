package daemon_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/orgno"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// coldCallers is how many callers ask at once in the cold benchmarks: the
// issue's load.
const coldCallers = 50

// BenchmarkColdDistinctKeys measures GetTokens that each need a new token
// (every call a key of its own, as for many consumer organisations), from
// coldCallers callers at once over mutual TLS, against bare signatures of
// the same key on the same token with the same concurrency: the ratio is
// what a cold token costs beyond its HSM signature (policy, audit, grant,
// the POST to the simulator, which runs in this process too). The key is
// RSA-3072, the size CAs issue eSeals in. Read it as a ratio from one run:
//
//	go test -run '^$' -bench ColdDistinctKeys -count 6 ./daemon | benchstat -col /op -
func BenchmarkColdDistinctKeys(b *testing.B) {
	w := mptest.New(b, mptest.Options{NoSigner: true})
	const label = "eseal-3072"
	if _, err := hsm.GenerateKey(w.Token.Token, hsm.KeySpec{Label: label, Bits: 3072}); err != nil {
		b.Fatal(err)
	}
	subject := eseal.Subject{OrgNumber: orgno.Number(softhsmtest.TestOrgNumber), Organization: "Portvakt Test AS", CommonName: "Portvakt test eSeal 3072"}
	if _, err := hsm.ImportCertificates(w.Token.Token, hsm.KeySelector{Label: label}, w.Certify(b, label, subject, 24*time.Hour), time.Now()); err != nil {
		b.Fatal(err)
	}
	e := startDaemon(b, w, func(cfg string) string { return strings.Replace(cfg, "key_label: eseal}", "key_label: "+label+"}", 1) })
	// The same token and key, in a context of its own with the daemon's
	// session limit: the bare HSM rate the daemon can at best reach.
	bare := mptest.OpenSigner(b, w.Token, label)
	digest := sha256.Sum256([]byte("grant"))

	var run atomic.Int64
	b.Run("op=sign", func(b *testing.B) {
		concurrently(b, coldCallers, func(int) error {
			_, err := bare.Sign(nil, digest[:], crypto.SHA256)
			return err
		})
	})
	b.Run("op=gettoken", func(b *testing.B) {
		r := run.Add(1)
		concurrently(b, coldCallers, func(i int) error {
			_, err := e.mtls.API().GetToken(context.Background(), &portvaktv1.GetTokenRequest{
				Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: fmt.Sprintf("https://api.example/%d/%d", r, i),
			})
			return err
		})
	})
}

// concurrently spreads b.N calls of op (numbered from 0) over a fixed
// number of goroutines.
func concurrently(b *testing.B, goroutines int, op func(i int) error) {
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) || failed.Load() != nil {
					return
				}
				if err := op(int(i)); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}
