package daemon

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestConnectionCap: the configured cap when every listener's connections
// and the reserve fit under the soft limit; else an even share of what is
// left, and never less than one.
func TestConnectionCap(t *testing.T) {
	for _, tt := range []struct {
		configured, listeners int
		soft                  uint64
		want                  int
	}{
		{1024, 2, 1 << 20, 1024},
		{1024, 2, 2*1024 + fdReserve, 1024},
		{1024, 2, 2*1024 + fdReserve - 1, 1023},
		{1024, 2, 256, 96},
		{1024, 1, 256, 192},
		{50, 2, 256, 50},
		{1024, 2, 64, 1},
		{1024, 2, 10, 1},
		{1024, 0, 10, 1024},
	} {
		if got := connectionCap(tt.configured, tt.listeners, tt.soft); got != tt.want {
			t.Errorf("connectionCap(%d, %d, %d) = %d, want %d", tt.configured, tt.listeners, tt.soft, got, tt.want)
		}
	}
}

// TestRaiseFileLimit: after it, the soft limit is the hard limit (Go's
// runtime leaves it one below).
func TestRaiseFileLimit(t *testing.T) {
	soft, hard, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if soft != hard {
		t.Fatalf("soft limit %d, hard %d: not raised", soft, hard)
	}
}

// TestEvictionWarningRateLimited: a flood of evictions is one warning per
// interval, each saying how many were closed since the last.
func TestEvictionWarningRateLimited(t *testing.T) {
	var buf bytes.Buffer
	w := &evictionWarning{log: slog.New(slog.NewJSONHandler(&buf, nil)), listener: "unix", max: 50}
	start := time.Unix(1_700_000_000, 0)
	for i := range 1000 {
		// 1000 evictions over 25 s of the warning's own clock.
		w.note(time.Duration(i)*time.Millisecond, start.Add(time.Duration(i)*25*time.Millisecond))
	}
	var closed []float64
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		if l["level"] != "WARN" || l["listener"] != "unix" || l["max_connections"] != 50.0 {
			t.Fatalf("warning %v", l)
		}
		closed = append(closed, l["closed"].(float64))
	}
	// At 0 s, 10 s and 20 s: the first alone, then the 400 of each interval.
	if len(closed) != 3 || closed[0] != 1 || closed[1] != 400 || closed[2] != 400 {
		t.Fatalf("warnings saying %v closed, want [1 400 400]", closed)
	}
}
