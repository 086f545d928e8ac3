package p11

import (
	"errors"

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
