package p11_test

import (
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/internal/p11fault"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// TestSlotListAsksAgain: a slot list that grew between counting and
// filling (CKR_BUFFER_TOO_SMALL, as p11-kit's client answers while its
// server comes back) is asked for again; it failed a daemon's start.
func TestSlotListAsksAgain(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	shim := p11fault.New(t, tok.Module)
	m, err := p11.Open(shim.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	shim.Fail("C_GetSlotList", pkcs11.CKR_BUFFER_TOO_SMALL, 2)
	if _, err := m.FindSlot(tok.Label); err != nil {
		t.Fatalf("FindSlot with the list growing twice: %v", err)
	}
	shim.Fail("C_GetSlotList", pkcs11.CKR_BUFFER_TOO_SMALL, 0) // for good: an HSM broken, not busy
	if _, err := m.FindSlot(tok.Label); err == nil {
		t.Fatal("FindSlot succeeded with every slot list refused")
	}
}
