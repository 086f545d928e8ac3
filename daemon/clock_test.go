package daemon_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

const clockWarning = "s off Maskinporten's; grants follow Maskinporten's clock, but fix the host's time (NTP)"

// TestClockDrift runs the daemon against a Maskinporten whose clock is
// 30 s ahead of the host's, and 30 s behind: more than the 10 s it allows
// an iat. The first grant, on the host's clock, is refused with MP-130;
// its answer's Date corrects the clock, and the grant made again on it
// gets the token, within the one GetToken call. Later grants are made on
// Maskinporten's clock from the start; the offset is in
// portvakt_maskinporten_clock_offset_seconds and warned about once. When
// Maskinporten's clock and the host's agree again, one refused grant puts
// the clock back and the warning is lifted.
func TestClockDrift(t *testing.T) {
	for _, ahead := range []time.Duration{30 * time.Second, -30 * time.Second} {
		t.Run(ahead.String(), func(t *testing.T) {
			w := mptest.New(t, mptest.Options{ClockOffset: ahead})
			e := startDaemon(t, w)
			// get is one GetToken call, a miss; it checks the call signed
			// wantSigs grants, each with its own jti and audit record.
			get := func(resource string, wantSigs int) {
				t.Helper()
				req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim", Resource: resource}
				_, id, err := call(t, e, req)
				if err != nil {
					t.Fatalf("a token with Maskinporten %v ahead: %v", ahead, err)
				}
				records := byRequest(auditOf(t, e), id)
				sigs := records["signature"]
				if len(sigs) != wantSigs || (wantSigs == 2 && sigs[0].GrantJTI == sigs[1].GrantJTI) {
					t.Fatalf("one call signed %v, want %d grants with distinct jtis", kindsOf(records), wantSigs)
				}
				if out := records["outcome"]; len(out) != 1 || out[0].Outcome != "issued" || out[0].GrantJTI != sigs[len(sigs)-1].GrantJTI {
					t.Fatalf("the call's outcome %+v, want one, issued, from its last grant", out)
				}
			}
			simSaw := func(requests, refused int) {
				t.Helper()
				st := w.Sim.Stats()
				if st.TokenRequests != requests || st.Refused["MP-130"] != refused {
					t.Fatalf("the simulator saw %d token requests and refused %d with MP-130, want %d and %d", st.TokenRequests, st.Refused["MP-130"], requests, refused)
				}
			}

			// One call: a refused grant and the one made again.
			get("", 2)
			simSaw(2, 1)
			// Another key, another miss: made on Maskinporten's clock at once.
			get("https://a.example/", 1)
			simSaw(3, 1)

			offset := clockOffset(t, e)
			if math.Abs(offset-ahead.Seconds()) > 2 {
				t.Errorf("portvakt_maskinporten_clock_offset_seconds = %v, want %v ± 2", offset, ahead.Seconds())
			}
			if n := strings.Count(e.logs.String(), clockWarning); n != 1 {
				t.Errorf("%d clock warnings logged for two answers 30 s off, want 1:\n%s", n, e.logs.String())
			}

			// The clocks agree again: one refusal, and the clock follows.
			w.Sim.SetClockOffset(0)
			get("https://b.example/", 2)
			simSaw(5, 2)
			get("https://c.example/", 1)
			simSaw(6, 2)
			if offset := clockOffset(t, e); math.Abs(offset) > 2 {
				t.Errorf("portvakt_maskinporten_clock_offset_seconds = %v after the clocks agree, want 0 ± 2", offset)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "the host's clock is back within") || strings.Count(logs, clockWarning) != 1 {
				t.Errorf("no all-clear (or another warning) when the clocks agree again:\n%s", logs)
			}
		})
	}
}

// TestClockSynced: against a Maskinporten on the host's time, nothing is
// refused, nothing warned, and the offset shown is under a second or so.
func TestClockSynced(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatal(err)
	}
	if st := w.Sim.Stats(); st.TokenRequests != 1 || st.Refused["MP-130"] != 0 {
		t.Errorf("the simulator saw %d token requests, %d MP-130 refusals; want 1 and 0", st.TokenRequests, st.Refused["MP-130"])
	}
	if offset := clockOffset(t, e); math.Abs(offset) > 2 {
		t.Errorf("portvakt_maskinporten_clock_offset_seconds = %v on a synced host, want about 0", offset)
	}
	if strings.Contains(e.logs.String(), "off Maskinporten's") {
		t.Errorf("a synced host's clock was warned about:\n%s", e.logs.String())
	}
}

// TestClockThresholdConfigured: with maskinporten.clock_threshold above
// the offset, grants keep the host's clock and are refused; the warning
// says so.
func TestClockThresholdConfigured(t *testing.T) {
	w := mptest.New(t, mptest.Options{ClockOffset: 30 * time.Second})
	e := startDaemon(t, w, func(cfg string) string { return cfg + "maskinporten: {clock_threshold: 60s}\n" })
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err == nil {
		t.Fatal("a grant 30 s off, under a threshold of 60 s, got a token")
	}
	if st := w.Sim.Stats(); st.TokenRequests != 1 || st.Refused["MP-130"] != 1 {
		t.Errorf("the simulator saw %d token requests, %d MP-130 refusals; want 1 and 1: no retry on a clock that did not move", st.TokenRequests, st.Refused["MP-130"])
	}
	if logs := e.logs.String(); !strings.Contains(logs, "grants keep the host's clock (maskinporten.clock_threshold is 1m0s)") {
		t.Errorf("the warning does not say grants keep the host's clock:\n%s", logs)
	}
}

func clockOffset(t *testing.T, e *env) float64 {
	t.Helper()
	return metric(t, e, "portvakt_maskinporten_clock_offset_seconds", map[string]string{"environment": "sim"})
}

// TestClockFromDiscovery: with discovery, the metadata's Date teaches the
// clock before the first grant, which is then not refused at all.
func TestClockFromDiscovery(t *testing.T) {
	w := mptest.New(t, mptest.Options{ClockOffset: 30 * time.Second})
	e := startDaemon(t, w, func(cfg string) string {
		return strings.Replace(cfg, "key_label: eseal}", "key_label: eseal, discovery: true}", 1)
	})
	if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
		t.Fatal(err)
	}
	if st := w.Sim.Stats(); st.TokenRequests != 1 || st.Refused["MP-130"] != 0 {
		t.Errorf("the simulator saw %d token requests, %d MP-130 refusals; want 1 and 0: the metadata's Date set the clock", st.TokenRequests, st.Refused["MP-130"])
	}
	if offset := clockOffset(t, e); math.Abs(offset-30) > 2 {
		t.Errorf("portvakt_maskinporten_clock_offset_seconds = %v, want 30 ± 2", offset)
	}
}
