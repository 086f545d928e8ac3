package signer

import (
	"crypto"
	"fmt"
	"sync"
	"testing"

	"github.com/ThalesGroup/crypto11"
)

// BenchmarkSign compares the Signer with a bare crypto11 key on the same
// token key, so the ratio of the two is the Signer's overhead (locking,
// argument checks, error classification). Read them as a ratio from one
// run: `make bench` or
//
//	go test -run '^$' -bench Sign -count 10 ./signer | benchstat -col /impl -
func BenchmarkSign(b *testing.B) {
	f := newFixture(b)
	s := f.open(b)
	cfg := f.config()
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path: cfg.Token.Module, TokenLabel: cfg.Token.TokenLabel, Pin: cfg.Token.PIN.Reveal(), MaxSessions: defaultMaxSessions,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ctx.Close() })
	raw, err := ctx.FindKeyPair(nil, []byte(cfg.Key.KeyLabel))
	if err != nil || raw == nil {
		b.Fatalf("finding the key with crypto11: %v", err)
	}
	digest := digestOf(crypto.SHA256, []byte("grant"))
	signers := []struct {
		name   string
		signer crypto.Signer
	}{{"crypto11", raw}, {"signer", s}}
	for _, goroutines := range []int{1, 2} {
		for _, sg := range signers {
			b.Run(fmt.Sprintf("goroutines=%d/impl=%s", goroutines, sg.name), func(b *testing.B) {
				signConcurrently(b, goroutines, func() error {
					_, err := sg.signer.Sign(nil, digest, crypto.SHA256)
					return err
				})
			})
		}
	}
}

// signConcurrently spreads b.N signatures over a fixed number of
// goroutines (b.RunParallel would tie the count to GOMAXPROCS).
func signConcurrently(b *testing.B, goroutines int, sign func() error) {
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	b.ResetTimer()
	for g := range goroutines {
		n := b.N / goroutines
		if g < b.N%goroutines {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := sign(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
