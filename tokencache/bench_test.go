package tokencache

import (
	"context"
	"testing"
	"time"
)

// BenchmarkGetHit is the cached path every GetToken takes: it must stay
// cheap and allocation-free.
func BenchmarkGetHit(b *testing.B) {
	c, _, _ := newTestCache(b, time.Hour)
	ctx := context.Background()
	if _, err := c.Get(ctx, testKey, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Get(ctx, testKey, time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetHitParallel measures the same under contention for the lock.
func BenchmarkGetHitParallel(b *testing.B) {
	c, _, _ := newTestCache(b, time.Hour)
	ctx := context.Background()
	if _, err := c.Get(ctx, testKey, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, testKey, time.Second); err != nil {
				b.Fatal(err)
			}
		}
	})
}
