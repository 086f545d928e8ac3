package hsm_test

import (
	"bytes"
	"testing"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestDataObjects: a value written is read back, a second write replaces
// it, and the object is private: without a login it is not there.
func TestDataObjects(t *testing.T) {
	tok := softhsmtest.NewToken(t)
	if got, err := hsm.ReadObjects(tok.Token, "portvakt-audit-head"); err != nil || len(got) != 0 {
		t.Fatalf("a new token: %q, %v; want no object", got, err)
	}
	for _, value := range [][]byte{[]byte(`{"seq":1}`), []byte(`{"seq":2}`)} {
		if err := hsm.WriteObject(tok.Token, "portvakt-audit-head", value); err != nil {
			t.Fatal(err)
		}
		got, err := hsm.ReadObjects(tok.Token, "portvakt-audit-head")
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], value) {
			t.Fatalf("after writing %s: %q, %v; want exactly it", value, got, err)
		}
	}
	// Private: a session that has not logged in does not see it. (The
	// module is closed again before crypto11 initialises it for List.)
	func() {
		m, err := p11.Open(tok.Module)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		session, err := m.OpenSession(tok.Label)
		if err != nil {
			t.Fatal(err)
		}
		defer m.CloseSession(session)
		if objects, err := m.DataObjects(session, "portvakt", "portvakt-audit-head"); err != nil || len(objects) != 0 {
			t.Fatalf("without a login: %d objects, %v; want none visible", len(objects), err)
		}
	}()
	inv, err := hsm.List(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Keys) != 0 || len(inv.Certificates) != 0 {
		t.Fatalf("a data object shows as a key or certificate: %+v", inv)
	}
}
