package audit

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// queryLog writes a small log of two requests an hour apart, rotated in
// between, and returns its directory and the time of the second request.
func queryLog(t *testing.T) (string, time.Time) {
	t.Helper()
	c := newClock()
	w, path := openLog(t, Options{NoSync: true, MaxAge: time.Hour, Now: c.Now})
	req := func(r Record) {
		t.Helper()
		if _, err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	a, b := "svv:kjoretoy/ecoc", "svv:kjoretoy/leasingtaker"
	// Records 2-5; then, two hours later and in a new file, 6 and 7.
	req(Record{Kind: KindDecision, RequestID: "req-1", Client: "billing", Environment: "prod", Scopes: []string{a}, Decision: "allow"})
	req(Record{Kind: KindSignature, RequestID: "req-1", Client: "billing", Environment: "prod", Scopes: []string{a}, GrantJTI: "jti-1"})
	req(Record{Kind: KindOutcome, RequestID: "req-1", Client: "billing", Environment: "prod", Scopes: []string{a}, Outcome: "issued", GrantJTI: "jti-1"})
	req(Record{Kind: KindDecision, RequestID: "req-2", Client: "reports", Environment: "test", Scopes: []string{b}, Decision: "deny"})
	c.Advance(2 * time.Hour)
	second := c.Now()
	req(Record{Kind: KindDecision, RequestID: "req-3", Client: "billing", Environment: "test", Scopes: []string{b, a}, Decision: "allow"})
	req(Record{Kind: KindOutcome, RequestID: "req-3", Client: "billing", Environment: "test", Scopes: []string{b, a}, Outcome: "cached", GrantJTI: "jti-1"})
	w.Close()
	return filepath.Dir(path), second
}

func TestQuery(t *testing.T) {
	dir, second := queryLog(t)
	tests := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"everything", Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"client", Filter{Client: "billing"}, []uint64{2, 3, 4, 6, 7}},
		{"scope, among several", Filter{Scope: "svv:kjoretoy/ecoc"}, []uint64{2, 3, 4, 6, 7}},
		{"environment", Filter{Environment: "test"}, []uint64{5, 6, 7}},
		{"request", Filter{RequestID: "req-1"}, []uint64{2, 3, 4}},
		{"kind", Filter{Kind: KindSignature}, []uint64{3}},
		{"grant", Filter{GrantJTI: "jti-1"}, []uint64{3, 4, 7}},
		{"since, inclusive", Filter{Since: second}, []uint64{6, 7}},
		{"until, exclusive", Filter{Until: second}, []uint64{1, 2, 3, 4, 5}},
		{"all of them", Filter{Client: "billing", Environment: "test", Kind: KindOutcome, Since: second.Add(-time.Minute)}, []uint64{7}},
		{"nothing", Filter{Client: "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := Query([]string{dir}, tt.f, func(r Record) error {
				got = append(got, r.Seq)
				return nil
			})
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Query = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestQueryLines: a record from Query carries its line as it is in the
// file, and an error from the callback stops Query.
func TestQueryLines(t *testing.T) {
	path := writeLog(t, 5)
	var out bytes.Buffer
	stop := errors.New("enough")
	err := Query([]string{path}, Filter{}, func(r Record) error {
		out.Write(r.Line())
		if r.Seq == 3 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("Query = %v, want the callback's error", err)
	}
	if want := bytes.Join(lines(t, path)[:3], nil); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("lines from Query:\n%s\nwant:\n%s", out.Bytes(), want)
	}
}

// TestQueryDoesNotVerify: an edited record is found as it now reads; a
// line that is no record at all stops Query.
func TestQueryDoesNotVerify(t *testing.T) {
	path := writeLog(t, 5)
	ls := lines(t, path)
	ls[2] = bytes.Replace(ls[2], []byte(`"client":"billing"`), []byte(`"client":"reports"`), 1)
	writeFile(t, path, ls)
	var got []uint64
	if err := Query([]string{path}, Filter{Client: "reports"}, func(r Record) error {
		got = append(got, r.Seq)
		return nil
	}); err != nil || !slices.Equal(got, []uint64{3}) {
		t.Fatalf("Query = %v, %v; want the edited record 3", got, err)
	}
	writeFile(t, path, append(ls, []byte("garbage\n")))
	err := Query([]string{path}, Filter{}, func(Record) error { return nil })
	wantProblem(t, err, ProblemMalformed, 6, 0, "not an audit record")
}
