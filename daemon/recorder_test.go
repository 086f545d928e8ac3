package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/internal/tracing"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/metrics"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/tokencache"
	"github.com/portvakt/portvakt/tokenservice"
)

// memLog is a coalescer's output, in memory.
type memLog struct {
	mu      sync.Mutex
	records []audit.Record
	fail    error
}

func (m *memLog) write(r audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.records = append(m.records, r)
	return nil
}

func (m *memLog) written() []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Record(nil), m.records...)
}

func denial(id, scope string) audit.Record {
	return audit.Record{Kind: audit.KindDecision, RequestID: id, Identities: []string{"uid:7"}, Scopes: []string{scope}, Decision: "deny"}
}

// TestCoalescer: the first record of a run is written at once; identical
// ones (but for their request id) are counted and written as one record
// with the count; beyond maxRuns runs, records are folded, or written.
func TestCoalescer(t *testing.T) {
	// As the recorder folds rate-limited calls by caller into one per client.
	foldAll := func(r audit.Record) audit.Record { r.Identities, r.Scopes = nil, nil; return r }
	type add struct {
		id, scope string
		fold      func(audit.Record) audit.Record
	}
	tests := []struct {
		name    string
		maxRuns int
		adds    []add
		want    []string // written, as REQUEST_ID:COUNT, after close
	}{
		{"one record", 10, []add{{"r1", "a:x", nil}}, []string{"r1:0"}},
		{"repeats are counted, the last id kept", 10,
			[]add{{"r1", "a:x", nil}, {"r2", "a:x", nil}, {"r3", "a:x", nil}}, []string{"r1:0", "r3:2"}},
		{"different records are runs of their own", 10,
			[]add{{"r1", "a:x", nil}, {"r2", "b:y", nil}, {"r3", "a:x", nil}}, []string{"r1:0", "r2:0", "r3:1"}},
		{"over maxRuns without fold: written", 1,
			[]add{{"r1", "a:x", nil}, {"r2", "b:y", nil}, {"r3", "b:y", nil}}, []string{"r1:0", "r2:0", "r3:0"}},
		{"over maxRuns with fold: counted together", 1,
			[]add{{"r1", "a:x", foldAll}, {"r2", "b:y", foldAll}, {"r3", "c:z", foldAll}, {"r4", "d:w", foldAll}}, []string{"r1:0", "r2:0", "r4:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &memLog{}
			c := newCoalescer(m.write, slog.New(slog.DiscardHandler))
			c.window, c.maxRuns = time.Hour, tt.maxRuns // counts are written by close only
			for _, a := range tt.adds {
				if err := c.add(denial(a.id, a.scope), a.fold); err != nil {
					t.Fatal(err)
				}
			}
			c.close()
			var got []string
			for _, r := range m.written() {
				got = append(got, fmt.Sprintf("%s:%d", r.RequestID, r.Count))
			}
			if !sameSet(got, tt.want) { // close writes counts in no particular order
				t.Fatalf("written %v, want %v", got, tt.want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestCoalescerWindows: a run's count is written when its window ends, at
// most once a window; a window with nothing counted ends the run, and the
// next record is written at once again. A first record that cannot be
// written is the caller's error, and starts no run.
func TestCoalescerWindows(t *testing.T) {
	m := &memLog{}
	c := newCoalescer(m.write, slog.New(slog.DiscardHandler))
	c.window = 50 * time.Millisecond
	defer c.close()
	for i := range 10 {
		if err := c.add(denial(fmt.Sprint(i), "a:x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.written()); n != 1 {
		t.Fatalf("%d records written at once, want the first only", n)
	}
	waitUntil(t, func() bool { return len(m.written()) == 2 })
	if r := m.written()[1]; r.Count != 9 || r.RequestID != "9" {
		t.Fatalf("the window's record: %+v, want a count of 9 and the last id", r)
	}
	waitUntil(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.runs) == 0 })
	if err := c.add(denial("10", "a:x"), nil); err != nil {
		t.Fatal(err)
	}
	if recs := m.written(); len(recs) != 3 || recs[2].RequestID != "10" || recs[2].Count != 0 {
		t.Fatalf("after the run ended: %+v, want the next record written at once", recs)
	}

	m.fail = fmt.Errorf("disk full")
	if err := c.add(denial("11", "b:y"), nil); err == nil {
		t.Fatal("a first record that could not be written was not an error")
	}
	m.fail = nil
	if err := c.add(denial("12", "b:y"), nil); err != nil {
		t.Fatal(err)
	}
	if recs := m.written(); len(recs) != 4 || recs[3].RequestID != "12" {
		t.Fatalf("after a failed first record: %+v, want the next written at once", recs)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a speed claim
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testRecorder(t *testing.T) (*recorder, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(audit.Options{Path: path, NoSync: true, MaxRecordBytes: maxRecordBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	r := newRecorder(w, metrics.New(), slog.New(slog.DiscardHandler), tracing.Tracer{})
	t.Cleanup(r.close)
	return r, path
}

func records(t *testing.T, path string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	if err := audit.Query([]string{path}, audit.Filter{}, func(r audit.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestRecorderRefusesRecordsOver4KiB: whatever reaches the recorder, a
// record over maxRecordBytes is refused (and so its request), never
// written; one at the limit is written, and lineBound is never less than
// the line written.
func TestRecorderRefusesRecordsOver4KiB(t *testing.T) {
	caller := identity.Caller{Transport: identity.TransportUnix, Identities: []string{"uid:7", "gid:7"}}
	scopes := func(n int) []string { return []string{"svv:" + strings.Repeat("s", n)} }
	tests := []struct {
		name   string
		scope  int // bytes of the one scope, past the bounds the token service keeps
		refuse bool
	}{
		{"small", 20, false},
		{"near the limit", 3000, false},
		{"over the limit", 5000, true},
		{"a 60 kB scope", 60_000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, path := testRecorder(t)
			d := tokenservice.Decision{
				Caller:   caller,
				Request:  tokencache.NewKey("prod", "c", scopes(tt.scope), "https://api.example", tokencache.OnBehalfOf{}),
				Decision: policy.Decision{Allowed: true, Client: "billing", Rules: []string{"policy.yaml:3"}, Reason: "allowed"},
				Cached:   &maskinporten.Token{GrantJTI: "jti-1", ExpiresAt: time.Now().Add(time.Minute)},
			}
			err := r.Decision(context.Background(), &d)
			recs := records(t, path)
			if tt.refuse {
				if err == nil || !strings.Contains(err.Error(), "over the 4096 a record may have") {
					t.Fatalf("Decision = %v, want a refusal naming the bound", err)
				}
				if len(recs) != 1 {
					t.Fatalf("%d records, want the start record only", len(recs))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := recs[len(recs)-1]
			if bound := lineBound(last); len(last.Line()) > bound || len(last.Line()) > maxRecordBytes {
				t.Fatalf("a line of %d bytes; bound %d", len(last.Line()), bound)
			}
		})
	}
}

// TestRecorderCountsRateLimitedCalls: a caller's rate-limited calls make
// their first record at once and one count after it, naming the caller,
// its client and the limit.
func TestRecorderCountsRateLimitedCalls(t *testing.T) {
	r, path := testRecorder(t)
	limited := []tokenservice.RateLimited{
		{Caller: identity.Caller{Transport: "unix", Identities: []string{"uid:7", "gid:7"}}, Limit: policy.RateLimit{PerSecond: 1, Burst: 10}},
		{Caller: identity.Caller{Transport: "mtls", Identities: []string{"spiffe://x.test/billing"}}, Client: "billing", Limit: policy.RateLimit{PerSecond: 5, Burst: 5}},
	}
	for range 100 {
		for _, l := range limited {
			if err := r.RateLimited(context.Background(), l); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.close()
	recs := records(t, path)[1:]
	tests := []struct {
		client, reason string
	}{
		{"", "no client claims the caller, and the rate limit all such callers share (1 calls per second, burst 10) is used up"},
		{"billing", `client "billing" is over its rate_limit of 5 calls per second (burst 5)`},
	}
	for _, tt := range tests {
		var n, total uint64
		for _, rec := range recs {
			if rec.Client != tt.client {
				continue
			}
			n++
			total += max(rec.Count, 1)
			if rec.Kind != audit.KindOutcome || rec.Outcome != "rate_limited" || rec.Reason != tt.reason || len(rec.Identities) == 0 {
				t.Errorf("record %+v", rec)
			}
		}
		if n != 2 || total != 100 {
			t.Errorf("client %q: %d records counting %d calls, want 2 counting 100", tt.client, n, total)
		}
	}
}

// lineBound is the most bytes rec's line can take in the log: rec as
// Append will write it, with the longest seq, time and prev there are.
func lineBound(rec audit.Record) int {
	rec.Seq = math.MaxUint64
	rec.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	rec.Prev = strings.Repeat("0", sha256.Size*2)
	b, err := json.Marshal(rec)
	if err != nil {
		return math.MaxInt // Append cannot write it either
	}
	// The line is b without its '}', then ,"hash":"<64 hex>"} and a newline.
	return len(b) - 1 + len(`,"hash":""}`) + sha256.Size*2 + 1
}

// TestTracedCostsNothingWhenOff: with tracing off, a record written in
// its span allocates no more than the record put on the log alone.
func TestTracedCostsNothingWhenOff(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are counted without the race detector, which makes sync.Pool drop buffers")
	}
	r, _ := testRecorder(t)
	rec := audit.Record{Kind: audit.KindDecision, RequestID: "r1", Identities: []string{"uid:7"}, Scopes: []string{"svv:x"}, Decision: "allow", Outcome: "cached"}
	ctx := context.Background()
	put := testing.AllocsPerRun(100, func() {
		if err := r.audit.Put(&rec, false); err != nil {
			t.Fatal(err)
		}
	})
	traced := testing.AllocsPerRun(100, func() {
		if err := r.traced(ctx, &rec, false); err != nil {
			t.Fatal(err)
		}
	})
	if traced > put {
		t.Errorf("a traced record allocates %.1f times, the record alone %.1f: the span of tracing off is not free", traced, put)
	}
}
