package hsm_test

import (
	"testing"

	"github.com/portvakt/portvakt/secret"
)

func mustPIN(t *testing.T, s string) secret.Value {
	t.Helper()
	p, err := secret.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
