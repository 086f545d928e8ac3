package hsm

import (
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/secret"
)

func TestCheckPINLengths(t *testing.T) {
	pin := func(s string) secret.Value {
		v, err := secret.New(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// opencryptoki 3.8's soft token takes 4 to 8 bytes.
	info := pkcs11.TokenInfo{MinPinLen: 4, MaxPinLen: 8}
	tests := []struct {
		so, user string
		want     string // empty: accepted
	}{
		{"87654321", "1234", ""},
		{"87654321", "123", "the user PIN has 3 bytes; this token takes 4 to 8"},
		{"87654321", "12345678901234567890", "the user PIN has 20 bytes"},
		{"123456789", "1234", "the security officer PIN has 9 bytes"},
	}
	for _, tt := range tests {
		err := checkPINLengths(info, pin(tt.so), pin(tt.user))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("PINs of %d and %d bytes refused: %v", len(tt.so), len(tt.user), err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("PINs of %d and %d bytes: %v, want %q", len(tt.so), len(tt.user), err, tt.want)
		case err != nil && (strings.Contains(err.Error(), tt.so) || strings.Contains(err.Error(), tt.user)):
			t.Errorf("the error reveals a PIN: %v", err)
		}
	}
	if err := checkPINLengths(pkcs11.TokenInfo{MinPinLen: 4}, pin("so-pin"), pin(strings.Repeat("x", 300))); err != nil {
		t.Errorf("a token without a maximum refused a long PIN: %v", err)
	}
}
