package hsm_test

import (
	"testing"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/p11kittest"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestListOverNetworkHSM: through p11-kit's client module every load of
// the module is an application of its own, with a login of its own. The
// inventory must still show the private keys, which only a logged-in
// session can see.
func TestListOverNetworkHSM(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	tok.NewKey(t, "eseal")
	srv := p11kittest.Start(t, tok)
	inv, err := hsm.List(srv.Token())
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Keys) != 1 || inv.Keys[0].Label != "eseal" {
		t.Fatalf("the inventory over the network HSM shows %d keys (%+v), want the one key", len(inv.Keys), inv.Keys)
	}
}
