package softhsmtest

import (
	"fmt"
	"os"
	"testing"
)

// The PKCS#11 implementations the tests run on. The environment variable
// PORTVAKT_TEST_HSM chooses one; SoftHSM2 is the default.
const (
	// SoftHSM2 is SoftHSM 2 (Debian: softhsm2): a token directory of the
	// test binary's own, a new token per test.
	SoftHSM2 = "softhsm2"
	// OpenCryptoki is opencryptoki's soft token (Debian: opencryptoki),
	// one per machine: test binaries take turns, each test re-initialises
	// it.
	OpenCryptoki = "opencryptoki"
)

// EnvImplementation is the environment variable that chooses the
// implementation.
const EnvImplementation = "PORTVAKT_TEST_HSM"

func chooseImplementation() (string, error) {
	switch v := os.Getenv(EnvImplementation); v {
	case "", SoftHSM2:
		return SoftHSM2, nil
	case OpenCryptoki:
		return OpenCryptoki, nil
	default:
		return "", fmt.Errorf("%s=%q: want %q (the default) or %q", EnvImplementation, v, SoftHSM2, OpenCryptoki)
	}
}

// Implementation is the PKCS#11 implementation the tests run on, SoftHSM2
// or OpenCryptoki. Tests ask only where the implementations legitimately
// differ (the README's table lists where), and then assert what each one
// does.
func Implementation() string {
	if impl == "" {
		panic("softhsmtest.Main was not called from TestMain")
	}
	return impl
}

// Module is the PKCS#11 module the tests run on.
func Module() string { return module }

// NeedTokens skips the test where one test cannot have n tokens at once:
// opencryptoki's soft token is one per machine. Only tests of how tokens
// affect each other need it; a test that merely wants a second key uses
// a second key on its one token.
func NeedTokens(t testing.TB, n int) {
	t.Helper()
	if n > 1 && Implementation() == OpenCryptoki {
		t.Skipf("needs %d tokens at once; opencryptoki 3.8's soft token is one per machine", n)
	}
}
