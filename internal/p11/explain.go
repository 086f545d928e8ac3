package p11

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/miekg/pkcs11"
)

// TokenError is a PKCS#11 failure said as what to do about it: which
// token and module, what happened in words, and the return value's name
// (CKR_PIN_INCORRECT) for the HSM's documentation, not the library's raw
// "pkcs11: 0xA0: ..." text. It unwraps to the failure, so errors.Is with a
// pkcs11.Error and Classify still see it. It never holds the PIN: PKCS#11
// errors do not carry it, and nothing here adds it.
type TokenError struct {
	Module, Label string
	// Class is Classify of the failure.
	Class Class
	msg   string
	err   error
}

func (e *TokenError) Error() string { return e.msg }
func (e *TokenError) Unwrap() error { return e.err }

// AboutPIN reports whether the token refused the PIN or has locked it:
// the PIN given, or its source, is what to look at.
func (e *TokenError) AboutPIN() bool { return e.Class == LoginRefused }

// ExplainOpenError turns a failure to open and log in to a token into
// what to fix: a missing module or one that does not load, a refused or
// locked PIN, a label no token has (listing the tokens the module does
// have), a token not there or busy.
func ExplainOpenError(module, label string, err error) error {
	if _, statErr := os.Stat(module); statErr != nil {
		return fmt.Errorf("PKCS#11 module: %w (install the HSM's PKCS#11 library, or softhsm2 for development, or correct the module path)", statErr)
	}
	var code pkcs11.Error
	if errors.As(err, &code) {
		return explainCode(module, label, code, err, fmt.Sprintf("opening token %q with module %s", label, module))
	}
	// crypto11 does not export its "token not found" error, nor the
	// module's failure to load; ask the module, so the message can say
	// which, and list the tokens it has.
	m, openErr := Open(module)
	if openErr != nil {
		return openErr
	}
	_, slotErr := m.FindSlot(label)
	m.Close()
	if errors.Is(slotErr, ErrTokenNotFound) {
		return slotErr
	}
	return fmt.Errorf("opening token %q with module %s: %w", label, module, err)
}

// Explain is ExplainOpenError for a failure while using an open token
// (generating a key, storing a certificate, signing): err's own context is
// kept, the raw return value becomes its name, and what to do is added.
// Errors without a PKCS#11 return value, and those explained already, are
// returned as they are.
func Explain(module, label string, err error) error {
	var (
		code      pkcs11.Error
		explained *TokenError
	)
	if errors.As(err, &explained) || !errors.As(err, &code) {
		return err
	}
	context := strings.TrimSuffix(strings.Replace(err.Error(), code.Error(), "", 1), ": ")
	return explainCode(module, label, code, err, context)
}

// explainCode says what code means for token label, after context (what
// was being done) for the codes that need it.
func explainCode(module, label string, code pkcs11.Error, err error, context string) *TokenError {
	name := codeName(code)
	class := Classify(code)
	var msg string
	switch {
	case IsPINIncorrect(code):
		msg = fmt.Sprintf("token %q refused the PIN (%s): check that it is the token's user PIN", label, name)
	case IsPINLocked(code):
		msg = fmt.Sprintf("the user PIN of token %q is locked after failed logins (%s): the security officer must reset it; trying again will not help", label, name)
	case code == pkcs11.CKR_PIN_EXPIRED:
		msg = fmt.Sprintf("the user PIN of token %q has expired (%s): set a new one with the HSM's tools", label, name)
	case code == pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		msg = fmt.Sprintf("token %q has no user PIN yet (%s): the security officer must set one (`portvakt hsm init` does for SoftHSM2)", label, name)
	case code == pkcs11.CKR_TOKEN_NOT_PRESENT, code == pkcs11.CKR_DEVICE_REMOVED:
		msg = fmt.Sprintf("%s: token %q is not in its slot of module %s (%s): insert or reconnect the HSM, then try again", context, label, module, name)
	case class == Gone:
		msg = fmt.Sprintf("%s: token %q of module %s cannot be reached (%s): check that the HSM is up and connected (for a network HSM, its client configuration and the network), then try again", context, label, module, name)
	case class == Busy:
		msg = fmt.Sprintf("%s: token %q is busy (%s): try again later, or with fewer sessions", context, label, name)
	default:
		msg = fmt.Sprintf("%s: token %q refused the operation (%s)", context, label, name)
	}
	return &TokenError{Module: module, Label: label, Class: class, msg: msg, err: err}
}

// codeName is a return value's name, CKR_PIN_INCORRECT, without the
// library's "pkcs11: 0xA0: " before it; a value without a name is shown
// in hex, as the HSM's documentation lists it.
func codeName(code pkcs11.Error) string {
	s := code.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR 0x%X", uint(code))
}
