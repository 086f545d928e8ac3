package p11

import (
	"errors"

	"github.com/miekg/pkcs11"
)

// Class is what a PKCS#11 failure means for the caller: wait, reconnect,
// stop, or give up on this request only.
type Class int

const (
	// Request: the token refused this request (a bad mechanism, data of the
	// wrong length, a key not allowed to sign). The token itself is fine.
	Request Class = iota
	// Busy: the token is there but out of sessions, memory or time for now
	// (CKR_SESSION_COUNT, CKR_DEVICE_MEMORY, CKR_FUNCTION_CANCELED…). It is
	// back-pressure: wait and try again; reconnecting would make it worse,
	// since a new context needs more sessions, not fewer.
	Busy
	// Gone: the token, the session, the login or the connection to a network
	// HSM is lost (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
	// CKR_SESSION_HANDLE_INVALID, CKR_CRYPTOKI_NOT_INITIALIZED…). The handles
	// in hand are dead; only a new context and a new key lookup help.
	Gone
	// LoginRefused: the token refused the PIN or has locked it. Trying again
	// with the same PIN only brings the lock closer, so recovery stops.
	LoginRefused
)

func (c Class) String() string {
	switch c {
	case Busy:
		return "busy"
	case Gone:
		return "gone"
	case LoginRefused:
		return "login refused"
	default:
		return "request refused"
	}
}

// codeClasses are the return values that are not about the request. A code
// not listed is Request.
var codeClasses = map[pkcs11.Error]Class{
	pkcs11.CKR_SESSION_COUNT:     Busy,
	pkcs11.CKR_DEVICE_MEMORY:     Busy,
	pkcs11.CKR_HOST_MEMORY:       Busy,
	pkcs11.CKR_FUNCTION_CANCELED: Busy,

	pkcs11.CKR_DEVICE_REMOVED:               Gone,
	pkcs11.CKR_DEVICE_ERROR:                 Gone,
	pkcs11.CKR_GENERAL_ERROR:                Gone, // SoftHSM2's answer for a token whose files are gone
	pkcs11.CKR_FUNCTION_FAILED:              Gone,
	pkcs11.CKR_TOKEN_NOT_PRESENT:            Gone,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:         Gone,
	pkcs11.CKR_SLOT_ID_INVALID:              Gone,
	pkcs11.CKR_SESSION_HANDLE_INVALID:       Gone,
	pkcs11.CKR_SESSION_CLOSED:               Gone,
	pkcs11.CKR_OBJECT_HANDLE_INVALID:        Gone, // SoftHSM2 after its token directory went away
	pkcs11.CKR_KEY_HANDLE_INVALID:           Gone,
	pkcs11.CKR_USER_NOT_LOGGED_IN:           Gone, // every session of the token was closed, and the login with them
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:     Gone,
	pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED: Gone,

	pkcs11.CKR_PIN_INCORRECT:            LoginRefused,
	pkcs11.CKR_PIN_INVALID:              LoginRefused,
	pkcs11.CKR_PIN_LEN_RANGE:            LoginRefused,
	pkcs11.CKR_PIN_EXPIRED:              LoginRefused,
	pkcs11.CKR_PIN_LOCKED:               LoginRefused,
	pkcs11.CKR_USER_PIN_NOT_INITIALIZED: LoginRefused,
}

// Classify says what err means for the caller. Errors that carry no
// PKCS#11 return value are Request errors, except that a token missing
// from the module's slot list (ErrTokenNotFound) is Gone: a token that
// was there at start and is not now has gone away.
func Classify(err error) Class {
	var code pkcs11.Error
	if errors.As(err, &code) {
		if c, ok := codeClasses[code]; ok {
			return c
		}
		return Request
	}
	if errors.Is(err, ErrTokenNotFound) || isCrypto11TokenNotFound(err) {
		return Gone
	}
	return Request
}

// isCrypto11TokenNotFound recognises crypto11's unexported error for a
// token label no slot has (crypto11.Configure while the token is away).
func isCrypto11TokenNotFound(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "could not find PKCS#11 token" {
			return true
		}
	}
	return false
}

// IsPINIncorrect reports whether the token refused the PIN.
func IsPINIncorrect(err error) bool {
	return errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE)) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INVALID))
}

// IsPINLocked reports whether the token locked the PIN after failed logins.
func IsPINLocked(err error) bool {
	return errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LOCKED))
}
