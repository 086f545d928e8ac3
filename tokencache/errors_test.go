package tokencache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/portvakt/portvakt/maskinporten"
)

// TestImpossibleMinValidityCostsOneFetch: a min validity above half the
// tokens' lifetime is refused; once the cache knows the lifetime it is
// refused without a signature or a POST.
func TestImpossibleMinValidityCostsOneFetch(t *testing.T) {
	c, f, _ := newTestCache(t, 120*time.Second)
	const asked = 119900 * time.Millisecond
	for i := range 20 {
		_, err := c.Get(context.Background(), testKey, asked)
		var short *TooShortError
		if !errors.Is(err, ErrTooShort) || !errors.As(err, &short) || short.Asked != asked || short.Longest != time.Minute {
			t.Fatalf("call %d: %v, want a TooShortError{%v, 1m}", i, err, asked)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches for 20 calls, want 1", n)
	}
	if _, ok, _ := c.GetCached(context.Background(), testKey, asked, func(maskinporten.Token) error {
		t.Fatal("accept called for a token that cannot have the validity asked")
		return nil
	}); ok {
		t.Fatal("GetCached handed out a token for an impossible min validity")
	}
}

// TestFreshTokenShorterThanAsked: a token that arrives with less left
// than asked (Maskinporten's clock ahead, a slow answer) is refused with
// the same error, naming what such tokens allow.
func TestFreshTokenShorterThanAsked(t *testing.T) {
	c, f, _ := newTestCache(t, 120*time.Second)
	f.mu.Lock()
	f.issuedAgo = 80 * time.Second // 40 s left on arrival
	f.mu.Unlock()
	_, err := c.Get(context.Background(), testKey, 50*time.Second)
	var short *TooShortError
	if !errors.Is(err, ErrTooShort) || !errors.As(err, &short) || short.Asked != 50*time.Second || short.Longest != 20*time.Second {
		t.Fatalf("Get = %v, want a TooShortError{50s, 20s}", err)
	}
}

func TestTooShortErrorMessage(t *testing.T) {
	tests := []struct {
		err  *TooShortError
		want string
	}{
		{&TooShortError{Asked: 119900 * time.Millisecond, Longest: time.Minute},
			"min_validity 119.9s cannot be met: Maskinporten issues tokens valid for 2m0s here, so the longest min_validity allowed is 1m0s"},
		{&TooShortError{Asked: 40 * time.Second, Longest: 15 * time.Second},
			"min_validity 40s cannot be met: Maskinporten issues tokens valid for 30s here, so the longest min_validity allowed is 15s"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q\nwant      %q", got, tt.want)
		}
	}
}

// TestRetryAdvice: advice survives wrapping and keeps the error it wraps
// reachable; errors of no temporary condition carry none.
func TestRetryAdvice(t *testing.T) {
	wrapped := fmt.Errorf("token service: %w", &retryLater{err: unavailable, after: 3 * time.Second})
	if after, ok := RetryAfter(wrapped); !ok || after != 3*time.Second {
		t.Fatalf("RetryAfter = %v, %v", after, ok)
	}
	var mpErr *maskinporten.Error
	if !errors.Is(wrapped, unavailable) || !errors.As(wrapped, &mpErr) {
		t.Fatal("the underlying error is not reachable")
	}
	for _, err := range []error{nil, ErrClosed, &TooShortError{}, context.Canceled} {
		if _, ok := RetryAfter(err); ok {
			t.Errorf("%v carries advice", err)
		}
	}
}
