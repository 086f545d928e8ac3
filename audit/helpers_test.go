package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a fake time that moves a millisecond each time it is read, so
// that records have distinct, predictable times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 11, 24, 15, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sample is a decision record as the daemon writes them, numbered by i.
func sample(i int) Record {
	return Record{
		Kind:        KindDecision,
		RequestID:   fmt.Sprintf("req-%04d", i),
		Transport:   "unix",
		Identities:  []string{"uid:1000", "gid:2000"},
		Client:      "billing",
		Method:      "/portvakt.v1.TokenService/GetToken",
		Environment: "prod",
		Scopes:      []string{fmt.Sprintf("svv:kjoretoy/scope%04d", i)},
		Decision:    "allow",
		Rule:        "policy.yaml:7",
		Reason:      "allowed by policy.yaml:7",
	}
}

// openLog opens a log in a new directory with a fake clock.
func openLog(t testing.TB, opts Options) (*Writer, string) {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "log", "audit.log")
	}
	if opts.Now == nil {
		opts.Now = newClock().Now
	}
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, opts.Path
}

// writeLog makes a closed log of n records (the start record included).
func writeLog(t testing.TB, n int) string {
	t.Helper()
	w, path := openLog(t, Options{NoSync: true})
	for i := 2; i <= n; i++ {
		if _, err := w.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// lines reads a file as its lines, newlines included.
func lines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := bytes.SplitAfter(data, []byte("\n"))
	if len(ls[len(ls)-1]) == 0 {
		ls = ls[:len(ls)-1] // after the last newline
	}
	return ls
}

func writeFile(t testing.TB, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reseal gives an edited line a hash that matches it again, as someone
// covering an edit would: the line verifies alone, and only the next
// record's prev gives it away.
func reseal(t testing.TB, line []byte) []byte {
	t.Helper()
	body, _, ok := splitLine(bytes.TrimSuffix(line, []byte("\n")))
	if !ok {
		t.Fatalf("not a record line: %s", line)
	}
	sum := sha256.Sum256(body)
	out := append(body[:len(body)-1:len(body)-1], hashPrefix...)
	out = append(out, hex.EncodeToString(sum[:])...)
	return append(out, "\"}\n"...)
}

// wantProblem checks that err is a *Problem of this kind, line and seq,
// and that its message holds detail.
func wantProblem(t *testing.T, err error, kind string, line int, seq uint64, detail string) *Problem {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("error = %v, want a %s problem", err, kind)
	}
	if p.Kind != kind || p.Line != line || p.Seq != seq || !bytes.Contains([]byte(p.Error()), []byte(detail)) {
		t.Fatalf("problem = %q (kind %s, line %d, seq %d), want kind %s, line %d, seq %d, saying %q", p, p.Kind, p.Line, p.Seq, kind, line, seq, detail)
	}
	return p
}
