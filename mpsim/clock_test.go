package mpsim

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// checkDate checks that h carries a Date header in http.TimeFormat that is
// want ahead of the real clock, ± 1 s, for an answer received between
// before and after on the real clock.
func checkDate(t *testing.T, what string, h http.Header, want time.Duration, before, after time.Time) {
	t.Helper()
	v := h.Get("Date")
	d, err := http.ParseTime(v)
	if err != nil || !strings.HasSuffix(v, " GMT") {
		t.Fatalf("%s: Date header %q is not an http.TimeFormat time: %v", what, v, err)
	}
	if d.Sub(before) < want-time.Second || d.Sub(after) > want+time.Second {
		t.Errorf("%s: Date %q is %s to %s ahead of the real clock, want %s ± 1 s", what, v, d.Sub(after), d.Sub(before), want)
	}
}

// TestClockOffset checks that the simulator's clock is the real one plus
// the offset: for grants, for issued tokens and in every Date header.
func TestClockOffset(t *testing.T) {
	const offset = 30 * time.Second
	s := startSim(t, func(c *Config) { c.ClockOffset = offset })
	if got := s.ClockOffset(); got != offset {
		t.Fatalf("ClockOffset() = %s, want %s", got, offset)
	}

	t.Run("grant on the real clock", func(t *testing.T) {
		before := time.Now()
		r := s.post(t, grantSpec{now: time.Now(), issuer: s.url}.build(t))
		after := time.Now()
		if r.status != 400 || r.err != "invalid_grant" || r.mp != "MP-130" || !strings.Contains(r.message, "Issue time too far in the past") {
			t.Errorf("got %d %s %s %q, want 400 invalid_grant MP-130", r.status, r.err, r.mp, r.message)
		}
		checkDate(t, "refusal", r.header, offset, before, after)
	})

	t.Run("grant on the simulator's clock", func(t *testing.T) {
		before := time.Now()
		r := s.post(t, grantSpec{now: time.Now().Add(offset), issuer: s.url}.build(t))
		after := time.Now()
		if r.status != http.StatusOK {
			t.Fatalf("got %d %s %s %q, want 200", r.status, r.err, r.mp, r.message)
		}
		checkDate(t, "token response", r.header, offset, before, after)
		claims := s.verifyAccessToken(t, r.token.AccessToken)
		iat := time.Unix(int64(claims["iat"].(float64)), 0)
		if d := iat.Sub(before); d < offset-time.Second || d > offset+after.Sub(before)+time.Second {
			t.Errorf("token iat %s is %s from the real clock, want %s", iat, d, offset)
		}
	})

	for _, path := range []string{".well-known/oauth-authorization-server", "jwk"} {
		t.Run("GET "+path, func(t *testing.T) {
			before := time.Now()
			resp, err := http.Get(s.url + path)
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			checkDate(t, path, resp.Header, offset, before, after)
		})
	}

	t.Run("405 on jwk", func(t *testing.T) {
		before := time.Now()
		resp, err := http.Post(s.url+"jwk", "text/plain", nil)
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d, want 405", resp.StatusCode)
		}
		checkDate(t, "405", resp.Header, offset, before, after)
	})

	t.Run("not found", func(t *testing.T) {
		before := time.Now()
		resp, err := http.Get(s.url + "nothing-here")
		after := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		checkDate(t, "404", resp.Header, offset, before, after)
	})

	t.Run("injected 503", func(t *testing.T) {
		s.SetFaults(Faults{ServerErrorRate: 1})
		t.Cleanup(func() { s.SetFaults(Faults{}) })
		before := time.Now()
		r := s.post(t, grantSpec{now: time.Now().Add(offset), issuer: s.url}.build(t))
		after := time.Now()
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", r.status)
		}
		checkDate(t, "503", r.header, offset, before, after)
	})

	t.Run("changed while serving", func(t *testing.T) {
		s.SetClockOffset(-offset)
		t.Cleanup(func() { s.SetClockOffset(offset) })
		if r := s.post(t, grantSpec{now: time.Now().Add(-offset), issuer: s.url}.build(t)); r.status != http.StatusOK {
			t.Errorf("grant 30 s behind with offset -30 s: %d %s %q, want 200", r.status, r.mp, r.message)
		}
		if r := s.post(t, grantSpec{now: time.Now(), issuer: s.url}.build(t)); r.mp != "MP-130" || !strings.Contains(r.message, "Issue time is after now") {
			t.Errorf("grant on the real clock with offset -30 s: %d %s %q, want MP-130 Issue time is after now", r.status, r.mp, r.message)
		}
	})
}

// TestClockOffsetWithSetClock checks that the offset is added to a clock
// set with SetClock too.
func TestClockOffsetWithSetClock(t *testing.T) {
	s := startSim(t, func(c *Config) { c.ClockOffset = time.Hour })
	at := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	s.SetClock(func() time.Time { return at })
	r := s.post(t, grantSpec{now: at.Add(time.Hour), issuer: s.url}.build(t))
	if r.status != http.StatusOK {
		t.Fatalf("got %d %s %q, want 200", r.status, r.mp, r.message)
	}
	if d, err := http.ParseTime(r.header.Get("Date")); err != nil || !d.Equal(at.Add(time.Hour)) {
		t.Errorf("Date %q, want %s", r.header.Get("Date"), at.Add(time.Hour).UTC().Format(http.TimeFormat))
	}
}
