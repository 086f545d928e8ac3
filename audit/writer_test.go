package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentAppend: records appended from many goroutines get every
// seq once, and the file verifies with all of them.
func TestConcurrentAppend(t *testing.T) {
	const goroutines, each = 8, 150
	for _, noSync := range []bool{true, false} {
		t.Run(fmt.Sprintf("nosync=%v", noSync), func(t *testing.T) {
			w, path := openLog(t, Options{NoSync: noSync})
			n := each
			if !noSync {
				n = 10 // an fsync each: enough to interleave, not so many as to be slow
			}
			seqs := make(chan uint64, goroutines*n)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range n {
						r, err := w.Append(sample(g*1000 + i))
						if err != nil {
							t.Error(err)
							return
						}
						seqs <- r.Seq
					}
				})
			}
			wg.Wait()
			close(seqs)
			seen := map[uint64]bool{}
			for s := range seqs {
				if seen[s] || s < 2 || s > uint64(goroutines*n+1) {
					t.Fatalf("seq %d handed out twice or out of range", s)
				}
				seen[s] = true
			}
			res, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := goroutines*n + 1; res.Records != want || res.LastSeq != uint64(want) || res.FirstSeq != 1 || res.Files != 1 {
				t.Fatalf("Verify = %+v, want %d records from seq 1", res, want)
			}
			if st := w.Stats(); st.LastSeq != res.LastSeq || st.LastHash != res.LastHash || st.Records != uint64(res.Records) || st.Failures != 0 {
				t.Errorf("Stats = %+v, want the verified end %d %s", st, res.LastSeq, res.LastHash)
			}
		})
	}
}

// TestReopenContinues: a Writer opened on an existing log continues its
// chain, and says so with a start record.
func TestReopenContinues(t *testing.T) {
	path := writeLog(t, 4)
	w, err := Open(Options{Path: path, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	last, err := w.Append(sample(9))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	ls := lines(t, path)
	if len(ls) != 6 || last.Seq != 6 {
		t.Fatalf("%d lines, last seq %d; want 6", len(ls), last.Seq)
	}
	start, err := parseLine(ls[4][:len(ls[4])-1])
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := parseLine(ls[3][:len(ls[3])-1])
	if start.Kind != KindStart || start.Seq != 5 || start.Prev != prev.Hash {
		t.Fatalf("record after reopening = %+v, want a start record 5 chained to %s", start, prev.Hash)
	}
	if _, err := Verify(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v (%v), want 0750", fi.Mode(), err)
	}
}

// TestOpenRefuses: a log whose end cannot be checked is not continued,
// and the error says where and what to do.
func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name   string
		damage func(ls [][]byte) [][]byte
		want   string
	}{
		{"torn last line", func(ls [][]byte) [][]byte {
			ls[4] = ls[4][:len(ls[4])/2]
			return ls
		}, ":5: the last record is cut short"},
		{"no newline at the end", func(ls [][]byte) [][]byte {
			ls[4] = ls[4][:len(ls[4])-1]
			return ls
		}, ":5: the last record is cut short"},
		{"last record edited", func(ls [][]byte) [][]byte {
			ls[4] = []byte(strings.Replace(string(ls[4]), "billing", "billinG", 1))
			return ls
		}, ":5: the last record was edited"},
		{"last line not a record", func(ls [][]byte) [][]byte {
			return append(ls, []byte("hello\n"))
		}, ":6: the last record is unreadable"},
		{"first record edited", func(ls [][]byte) [][]byte {
			ls[0] = []byte(strings.Replace(string(ls[0]), "opened", "OPENED", 1))
			return ls
		}, ":1: the first record was edited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 5)
			writeFile(t, path, tt.damage(lines(t, path)))
			before, _ := os.ReadFile(path)
			_, err := Open(Options{Path: path})
			if !errors.Is(err, ErrCannotContinue) || !strings.Contains(err.Error(), path+tt.want) || !strings.Contains(err.Error(), "portvakt audit verify") {
				t.Fatalf("Open = %v, want a refusal naming %s%s and portvakt audit verify", err, path, tt.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("Open changed the file it refused")
			}
		})
	}
}

// TestOneWriterPerLog: a second writer would fork the chain.
func TestOneWriterPerLog(t *testing.T) {
	w, path := openLog(t, Options{NoSync: true})
	if _, err := Open(Options{Path: path}); err == nil || !strings.Contains(err.Error(), "another process is writing") {
		t.Fatalf("a second Open = %v, want a refusal", err)
	}
	w.Close()
	w2, err := Open(Options{Path: path})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	w2.Close()
	if _, err := w.Append(sample(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
}

// TestOpenUnwritable: a path that cannot be a log file is refused at
// Open, also for root (for whom chmod does not stop writes).
func TestOpenUnwritable(t *testing.T) {
	dir := t.TempDir()
	asDir := filepath.Join(dir, "audit.log")
	if err := os.Mkdir(asDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: asDir}); err == nil || !strings.Contains(err.Error(), asDir) {
		t.Errorf("Open of a directory = %v", err)
	}
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	if _, err := Open(Options{Path: filepath.Join(notDir, "audit.log")}); err == nil {
		t.Error("Open under a regular file succeeded")
	}
}

// TestAppendValidates: records without a kind are refused, and the
// chain fields are the Writer's, whatever the caller put there.
func TestAppendValidates(t *testing.T) {
	w, _ := openLog(t, Options{NoSync: true})
	if _, err := w.Append(Record{}); err == nil {
		t.Error("a record without a kind was written")
	}
	r, err := w.Append(Record{Kind: KindOutcome, Seq: 99, Prev: "forged", Hash: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 2 || r.Prev == "forged" || r.Hash == "forged" || r.Time.Location() != time.UTC {
		t.Errorf("Append returned %+v", r)
	}
	big := sample(1)
	big.Reason = strings.Repeat("x", MaxLineBytes)
	if _, err := w.Append(big); err == nil {
		t.Error("a record over MaxLineBytes was written")
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			w, _ := openLog(b, Options{NoSync: !sync})
			r := sample(1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Append(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWatch is the look at the file before each record (one stat of
// the path, compared with what the Writer knows), alone: its share of
// BenchmarkAppend/sync=false, which is the cost of a cached token's record.
func BenchmarkWatch(b *testing.B) {
	w, _ := openLog(b, Options{NoSync: true})
	b.ReportAllocs()
	for b.Loop() {
		if t, err := w.watch(true); t != nil || err != nil {
			b.Fatal(t, err)
		}
	}
}

// BenchmarkAppendParallel appends from many goroutines at once, as the
// daemon's concurrent callers do, and reports how many records each
// write(2) carried (records/write) and how many writes a record cost.
func BenchmarkAppendParallel(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			w, _ := openLog(b, Options{NoSync: !sync})
			start := w.Stats()
			b.ReportAllocs()
			b.SetParallelism(8) // 16 callers on this machine's 2 cores, as the issue measured
			b.RunParallel(func(pb *testing.PB) {
				r := sample(1)
				for pb.Next() {
					if _, err := w.Append(r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			end := w.Stats()
			n, recs := end.Writes-start.Writes, end.Records-start.Records
			if n > 0 {
				b.ReportMetric(float64(recs)/float64(n), "records/write")
				b.ReportMetric(float64(n)/float64(b.N), "writes/op")
			}
		})
	}
}
