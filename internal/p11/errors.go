package p11

import (
	"errors"
	"fmt"
	"os"

	"github.com/miekg/pkcs11"
)

// tokenGoneCodes are the answers of a module whose token, session or login
// has gone away: an HSM restart, a network HSM's blip, SoftHSM2's token
// directory disappearing. After any of them the object and session handles in
// hand are dead, and only a new context and a new key lookup help.
var tokenGoneCodes = map[pkcs11.Error]bool{
	pkcs11.CKR_GENERAL_ERROR:                true,
	pkcs11.CKR_DEVICE_ERROR:                 true,
	pkcs11.CKR_DEVICE_MEMORY:                true,
	pkcs11.CKR_DEVICE_REMOVED:               true,
	pkcs11.CKR_TOKEN_NOT_PRESENT:            true,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:         true,
	pkcs11.CKR_SLOT_ID_INVALID:              true,
	pkcs11.CKR_SESSION_HANDLE_INVALID:       true,
	pkcs11.CKR_SESSION_CLOSED:               true,
	pkcs11.CKR_SESSION_COUNT:                true,
	pkcs11.CKR_OBJECT_HANDLE_INVALID:        true,
	pkcs11.CKR_KEY_HANDLE_INVALID:           true,
	pkcs11.CKR_USER_NOT_LOGGED_IN:           true,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:     true,
	pkcs11.CKR_FUNCTION_FAILED:              true,
	pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED: true,
}

// IsTokenGone reports whether err says that the token, the session or the
// login is gone, so that the caller should re-open rather than give up.
// Errors that describe the request (a bad mechanism, a wrong PIN, data of
// the wrong length) are not.
func IsTokenGone(err error) bool {
	var code pkcs11.Error
	if errors.As(err, &code) {
		return tokenGoneCodes[code]
	}
	return false
}

// IsPINIncorrect reports whether the token refused the PIN.
func IsPINIncorrect(err error) bool {
	return errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE))
}

// IsPINLocked reports whether the token locked the PIN after failed logins.
func IsPINLocked(err error) bool {
	return errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LOCKED))
}

// ExplainOpenError turns a failure to open and log in to a token into
// what to fix: a missing module, a refused or locked PIN, or a label no
// token has (listing the tokens the module does have). It never includes
// the PIN: PKCS#11 errors do not carry it, and nothing here adds it.
func ExplainOpenError(module, label string, err error) error {
	if _, statErr := os.Stat(module); statErr != nil {
		return fmt.Errorf("PKCS#11 module: %w (install the HSM's PKCS#11 library, or softhsm2 for development, or correct the module path)", statErr)
	}
	switch {
	case IsPINIncorrect(err):
		return fmt.Errorf("token %q refused the PIN: check the PIN file or variable: %w", label, err)
	case IsPINLocked(err):
		return fmt.Errorf("the user PIN of token %q is locked after failed logins; the security officer must reset it: %w", label, err)
	}
	// crypto11 does not export its "token not found" error; ask the module
	// which tokens it has, so the message can list them.
	if m, openErr := Open(module); openErr == nil {
		_, slotErr := m.FindSlot(label)
		m.Close()
		if errors.Is(slotErr, ErrTokenNotFound) {
			return slotErr
		}
	}
	return fmt.Errorf("opening token %q with module %s: %w", label, module, err)
}
