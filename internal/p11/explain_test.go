package p11

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestExplainCodes: each failure a person must act on is said in a
// sentence naming the token (and the module, where it is at fault), the
// return value by its name only, and what to do; errors.Is and Classify
// still see the return value.
func TestExplainCodes(t *testing.T) {
	module := filepath.Join(t.TempDir(), "module.so")
	if err := os.WriteFile(module, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		code  uint
		class Class
		want  []string
	}{
		{pkcs11.CKR_PIN_INCORRECT, LoginRefused, []string{`token "prod" refused the PIN (CKR_PIN_INCORRECT)`, "user PIN"}},
		{pkcs11.CKR_PIN_LOCKED, LoginRefused, []string{`user PIN of token "prod" is locked`, "security officer must reset it"}},
		{pkcs11.CKR_PIN_EXPIRED, LoginRefused, []string{"has expired (CKR_PIN_EXPIRED)"}},
		{pkcs11.CKR_USER_PIN_NOT_INITIALIZED, LoginRefused, []string{"no user PIN yet"}},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, Gone, []string{`token "prod" is not in its slot of module ` + module, "CKR_TOKEN_NOT_PRESENT", "reconnect the HSM"}},
		{pkcs11.CKR_DEVICE_REMOVED, Gone, []string{"CKR_DEVICE_REMOVED", "reconnect the HSM"}},
		{pkcs11.CKR_DEVICE_ERROR, Gone, []string{"cannot be reached (CKR_DEVICE_ERROR)", "network HSM"}},
		{pkcs11.CKR_SESSION_COUNT, Busy, []string{`token "prod" is busy (CKR_SESSION_COUNT)`, "try again later"}},
		{pkcs11.CKR_MECHANISM_INVALID, Request, []string{"refused the operation (CKR_MECHANISM_INVALID)"}},
	}
	for _, tt := range tests {
		code := pkcs11.Error(tt.code)
		t.Run(codeName(code), func(t *testing.T) {
			for name, err := range map[string]error{
				"opening": ExplainOpenError(module, "prod", fmt.Errorf("crypto11: %w", code)),
				"in use":  Explain(module, "prod", fmt.Errorf("generating a key on token %q: %w", "prod", code)),
				"twice":   Explain(module, "prod", Explain(module, "prod", code)),
			} {
				msg := err.Error()
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: %q does not say %q", name, msg, w)
					}
				}
				if strings.Contains(msg, "pkcs11:") || strings.Contains(msg, fmt.Sprintf("0x%X", tt.code)) || strings.Count(msg, codeName(code)) != 1 {
					t.Errorf("%s: %q: want the code's name once, not the library's text", name, msg)
				}
				if !errors.Is(err, code) || Classify(err) != tt.class {
					t.Errorf("%s: errors.Is %v, Classify %v: want the code seen, class %v", name, errors.Is(err, code), Classify(err), tt.class)
				}
				var te *TokenError
				if !errors.As(err, &te) || te.AboutPIN() != (tt.class == LoginRefused) {
					t.Errorf("%s: not a TokenError about the PIN = %v", name, tt.class == LoginRefused)
				}
			}
		})
	}
	if got := Explain(module, "prod", errors.New("no PKCS#11 in it")); got.Error() != "no PKCS#11 in it" {
		t.Errorf("Explain changed an error without a return value: %v", got)
	}
	if got := codeName(pkcs11.Error(0x80001234)); got != "CKR 0x80001234" {
		t.Errorf("a vendor's code is named %q", got)
	}
}

// TestExplainModule: a module that is not there, or does not load, is
// named with what to do.
func TestExplainModule(t *testing.T) {
	dir := t.TempDir()
	notLibrary := filepath.Join(dir, "not-a-library.so")
	if err := os.WriteFile(notLibrary, []byte("text"), 0o600); err != nil {
		t.Fatal(err)
	}
	for module, want := range map[string]string{
		filepath.Join(dir, "absent.so"): "install the HSM's PKCS#11 library",
		notLibrary:                      "PKCS#11 module " + notLibrary + " could not be loaded",
	} {
		err := ExplainOpenError(module, "prod", errors.New("failed to create module context"))
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q", module, err, want)
		}
	}
}
