package hsm_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/ThalesGroup/crypto11"

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

// TestObjectsChangedAtOnce: Portvakt's data objects written, keys made
// and the tokens listed at the same time, from goroutines of one process
// on two tokens of one module, as a daemon's rotation, checkpoints and
// ListKeys do (and, in tests, other daemons of the process). Every call
// succeeds: SoftHSM2 refused an object being created (CKR_GENERAL_ERROR)
// while another thread changed or read the token store, until such calls
// took p11.LockObjects.
func TestObjectsChangedAtOnce(t *testing.T) {
	softhsmtest.NeedTokens(t, 2)
	a, b := softhsmtest.NewToken(t), softhsmtest.NewToken(t)
	// The module stays initialised throughout, by a crypto11 context as
	// the daemon's signer keeps it: the calls borrow it rather than each
	// initialise and finalise it under the others.
	held, err := crypto11.Configure(&crypto11.Config{Path: a.Module, TokenLabel: a.Label, Pin: a.PIN.Reveal()})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 100000)
	done := make(chan struct{})
	wg.Go(func() {
		for i := range 40 {
			if err := hsm.WriteObject(a.Token, "portvakt-rotation-sim", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
				errs <- fmt.Errorf("write %d: %w", i, err)
			}
		}
	})
	wg.Go(func() {
		for i := range 4 {
			if _, err := hsm.GenerateKey(b.Token, hsm.KeySpec{Label: fmt.Sprintf("key-%d", i), Bits: 2048}); err != nil {
				errs <- fmt.Errorf("key %d: %w", i, err)
			}
		}
	})
	var listers sync.WaitGroup
	for _, tok := range []softhsmtest.Token{a, b} {
		listers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := hsm.List(tok.Token); err != nil {
					errs <- fmt.Errorf("listing %s: %w", tok.Label, err)
				}
				if _, err := hsm.ReadObjects(tok.Token, "portvakt-rotation-sim"); err != nil {
					errs <- fmt.Errorf("reading %s: %w", tok.Label, err)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	listers.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if got, err := hsm.ReadObjects(a.Token, "portvakt-rotation-sim"); err != nil || len(got) != 1 || string(got[0]) != `{"n":39}` {
		t.Errorf("the state after the writes: %q, %v; want the last one alone", got, err)
	}
}
