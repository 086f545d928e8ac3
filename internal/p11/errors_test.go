package p11

import (
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Class
	}{
		{pkcs11.Error(pkcs11.CKR_SESSION_COUNT), Busy},
		{pkcs11.Error(pkcs11.CKR_DEVICE_MEMORY), Busy},
		{pkcs11.Error(pkcs11.CKR_HOST_MEMORY), Busy},
		{pkcs11.Error(pkcs11.CKR_FUNCTION_CANCELED), Busy},
		{pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED), Gone},
		{pkcs11.Error(pkcs11.CKR_DEVICE_ERROR), Gone}, // p11-kit's client with its server gone
		{pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT), Gone},
		{pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID), Gone},
		{pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED), Gone},
		{pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID), Gone},
		{pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), Gone},
		{pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN), Gone},
		{pkcs11.Error(pkcs11.CKR_PIN_INCORRECT), LoginRefused},
		{pkcs11.Error(pkcs11.CKR_PIN_LOCKED), LoginRefused},
		{pkcs11.Error(pkcs11.CKR_PIN_EXPIRED), LoginRefused},
		{pkcs11.Error(pkcs11.CKR_MECHANISM_INVALID), Request},
		{pkcs11.Error(pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED), Request},
		{pkcs11.Error(pkcs11.CKR_DATA_LEN_RANGE), Request},
		{fmt.Errorf("signing: %w", pkcs11.Error(pkcs11.CKR_SESSION_COUNT)), Busy},
		{fmt.Errorf("%w: no token is labelled", ErrTokenNotFound), Gone},
		{fmt.Errorf("%w: no token is labelled", ErrNoInitialisedToken), Gone},
		{fmt.Errorf("configure: %w", errors.New("could not find PKCS#11 token")), Gone},
		{errors.New("something else"), Request},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
