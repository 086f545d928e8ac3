package hsm_test

import (
	"testing"

	"github.com/portvakt/portvakt/pin"
)

func mustPIN(t *testing.T, s string) pin.PIN {
	t.Helper()
	p, err := pin.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
