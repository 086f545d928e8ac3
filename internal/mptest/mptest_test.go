package mptest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	"github.com/portvakt/portvakt/mpsim"
	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

func TestOptions(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true, ClockOffset: 30 * time.Second})
	if got := w.Sim.ClockOffset(); got != 30*time.Second {
		t.Errorf("ClockOffset() = %s, want 30s", got)
	}
	before := time.Now()
	resp, err := http.Get(w.Issuer + "jwk")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil || date.Sub(before) < 29*time.Second || date.Sub(before) > 32*time.Second {
		t.Errorf("Date %q: want 30 s ahead of %s", resp.Header.Get("Date"), before.UTC().Format(http.TimeFormat))
	}
	w.Sim.SetClockOffset(0)

	if got := w.Sim.SystemUsers(); len(got) != 1 || got[0] != mptest.DefaultSystemUser() {
		t.Errorf("default system users %+v, want DefaultSystemUser", got)
	}
	w = mptest.New(t, mptest.Options{NoSigner: true, SystemUsers: []mpsim.SystemUser{{SystemID: mptest.SystemID, Customer: mptest.StrangerOrg}}})
	if got := w.Sim.SystemUsers(); len(got) != 1 || got[0].ClientID != mptest.ClientID || got[0].Customer != mptest.StrangerOrg || got[0].ID == "" {
		t.Errorf("system users %+v, want one for ClientID and StrangerOrg with an id", got)
	}
}
