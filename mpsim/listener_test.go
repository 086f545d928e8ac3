package mpsim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestListenerDownAndUp: Down refuses connections and cuts a request in
// flight (one held by Latency) at once; Up serves again on the same
// address, with the same simulator.
func TestListenerDownAndUp(t *testing.T) {
	f := getFixture(t)
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	cfg := f.config(l.URL())
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Serve(s.Handler()); err != nil {
		t.Fatal(err)
	}
	sm := &sim{Server: s, url: l.URL()}
	if r := sm.post(t, sm.grant(t, nil)); r.status != http.StatusOK {
		t.Fatalf("before Down: %d %s", r.status, r.message)
	}

	// A request held by a long latency when Down comes.
	s.SetFaults(Faults{Latency: time.Minute})
	inFlight := make(chan error, 1)
	go func() {
		resp, err := http.Post(l.URL()+"token", "application/x-www-form-urlencoded", strings.NewReader(tokenForm(sm.grant(t, nil))))
		if err == nil {
			resp.Body.Close()
		}
		inFlight <- err
	}()
	for s.Stats().TokenRequests < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if err := <-inFlight; err == nil {
		t.Fatal("the request in flight at Down got an answer")
	}
	if d := time.Since(start); d > 10*time.Second { // a hang guard: the latency is a minute
		t.Fatalf("Down took %s: it waited for the delayed request", d)
	}
	if err := l.Down(); err != nil {
		t.Fatalf("a second Down: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.URL()+"jwk", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		if err == nil {
			resp.Body.Close()
		}
		t.Fatalf("while down: %v, want connection refused", err)
	}

	s.SetFaults(Faults{})
	if err := l.Up(); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if err := l.Up(); err != nil {
		t.Fatalf("a second Up: %v", err)
	}
	if r := sm.post(t, sm.grant(t, nil)); r.status != http.StatusOK {
		t.Fatalf("after Up: %d %s", r.status, r.message)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Up(); err == nil {
		t.Fatal("Up after Close succeeded")
	}
}

// TestStatsCountResources: every well-formed token request is counted by
// its resource claim, faulted ones too.
func TestStatsCountResources(t *testing.T) {
	s := startSim(t, nil)
	withResource := func(r any) func(h, c map[string]any) {
		return func(h, c map[string]any) { c["resource"] = r }
	}
	s.post(t, s.grant(t, withResource("https://a.example")))
	s.post(t, s.grant(t, nil))
	s.SetFaults(Faults{ServerErrorRate: 1})
	s.post(t, s.grant(t, withResource("https://a.example")))
	s.post(t, s.grant(t, withResource([]any{"https://b.example", "https://c.example"})))
	got := s.Stats().Resources
	want := map[string]int{"https://a.example": 2, "": 1, "https://b.example https://c.example": 1}
	if len(got) != len(want) {
		t.Fatalf("Resources = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("Resources = %v, want %v", got, want)
		}
	}
}
