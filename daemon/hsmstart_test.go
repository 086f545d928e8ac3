package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/internal/p11"
)

// TestAwayForNow: the start waits only for an HSM that is unreachable; a
// mistake in the configuration is said at once.
func TestAwayForNow(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"network HSM not connected", fmt.Errorf("x: %w: no token is labelled \"a\"", p11.ErrNoInitialisedToken), true},
		{"connection lost", fmt.Errorf("opening: %w", pkcs11.Error(pkcs11.CKR_DEVICE_ERROR)), true},
		{"label not among the tokens present", fmt.Errorf("%w: no token is labelled \"a\" (tokens present: \"b\")", p11.ErrTokenNotFound), false},
		{"PIN refused", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT), false},
		{"mechanism refused", pkcs11.Error(pkcs11.CKR_MECHANISM_INVALID), false},
		{"no module", errors.New("PKCS#11 module: stat /x.so: no such file or directory"), false},
	}
	for _, tt := range tests {
		if got := awayForNow(tt.err); got != tt.want {
			t.Errorf("%s: awayForNow = %v, want %v", tt.name, got, tt.want)
		}
	}
}
