package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gate holds one write of the files it opens on a faulty disk, so that a
// test knows which records queue behind it: the group of the next write.
type gate struct {
	mu      sync.Mutex
	holding bool   // hold the next write
	then    func() // run after the held write, before it returns
	writes  []int  // records (newlines) each write carried
	syncs   int
	entered chan struct{}
	release chan struct{}
}

type gatedFile struct {
	file
	g *gate
}

func (f *gatedFile) Write(p []byte) (int, error) {
	g := f.g
	g.mu.Lock()
	held := g.holding
	g.holding = false
	g.writes = append(g.writes, bytes.Count(p, []byte{'\n'}))
	g.mu.Unlock()
	if held {
		g.entered <- struct{}{}
		<-g.release
	}
	n, err := f.file.Write(p)
	if held && g.then != nil {
		g.then()
	}
	return n, err
}

func (f *gatedFile) Sync() error {
	f.g.mu.Lock()
	f.g.syncs++
	f.g.mu.Unlock()
	return f.file.Sync()
}

// counts returns the records of each write and the fsyncs so far.
func (g *gate) counts() ([]int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.writes...), g.syncs
}

// openGated opens a log on a faulty disk (failure_test.go) whose writes go
// through a gate.
func openGated(t *testing.T, opts Options) (*Writer, string, *disk, *gate) {
	t.Helper()
	d, g := &disk{}, &gate{entered: make(chan struct{}), release: make(chan struct{})}
	opts.openFile = func(path string) (file, error) {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		return &gatedFile{file: &faultyFile{File: f, d: d}, g: g}, nil
	}
	if opts.retry == nil {
		opts.retry = fastRetry
	}
	w, path := openLog(t, opts)
	return w, path, d, g
}

// appended is what one caller of a group got.
type appended struct {
	rec Record
	err error
}

// heldGroup appends a record and holds its write; meanwhile the k records of
// add queue, and are written, as one group, once the first write is let
// go. It returns first's result and theirs, in the order of i.
func heldGroup(t *testing.T, w *Writer, g *gate, k int, add func(i int) (Record, error)) (appended, []appended) {
	t.Helper()
	g.mu.Lock()
	g.holding = true
	g.mu.Unlock()
	firstDone := make(chan appended, 1)
	go func() {
		r, err := w.AppendUnsynced(sample(1000)) // no fsync of its own: the group's is the next
		firstDone <- appended{r, err}
	}()
	<-g.entered
	got := make([]appended, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() {
			r, err := add(i)
			got[i] = appended{r, err}
		})
	}
	waitQueued(t, w, k)
	close(g.release)
	wg.Wait()
	return <-firstDone, got
}

// waitQueued waits until n records wait in w's queue.
func waitQueued(t *testing.T, w *Writer, n int) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		w.qmu.Lock()
		queued := len(w.queue)
		w.qmu.Unlock()
		if queued >= n {
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%d records queued, want %d", queued, n)
		}
	}
}

// requestIDs reads the request ids of the records in the files, in order.
func requestIDs(t *testing.T, paths ...string) []string {
	t.Helper()
	var ids []string
	for _, p := range paths {
		for _, l := range lines(t, p) {
			r, err := parseLine(bytes.TrimSuffix(l, []byte("\n")))
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			ids = append(ids, r.RequestID)
		}
	}
	return ids
}

const groupSize = 15 // with the leader's, the 16 callers the issue measured

// TestGroupSharesOneWrite: records that queue while a write is under way
// go out together in the next write(2), and share one fsync when synced;
// each caller gets its own record back, chained in queue order, and the
// log verifies with every record once.
func TestGroupSharesOneWrite(t *testing.T) {
	for _, synced := range []bool{false, true} {
		t.Run(fmt.Sprintf("synced=%v", synced), func(t *testing.T) {
			w, path, _, g := openGated(t, Options{NoSync: !synced})
			_, syncsBefore := g.counts()
			first, got := heldGroup(t, w, g, groupSize, func(i int) (Record, error) {
				if i%3 == 0 {
					r := sample(i)
					return Record{}, w.Put(&r, synced) // the daemon's way, for a third of them
				}
				return w.Append(sample(i))
			})
			if first.err != nil {
				t.Fatal(first.err)
			}
			seqs := map[uint64]bool{}
			for i, a := range got {
				if a.err != nil {
					t.Fatalf("record %d: %v", i, a.err)
				}
				if i%3 != 0 {
					if a.rec.RequestID != sample(i).RequestID || a.rec.Seq <= first.rec.Seq || seqs[a.rec.Seq] || !strings.HasSuffix(string(a.rec.Line()), `"hash":"`+a.rec.Hash+"\"}\n") {
						t.Fatalf("record %d came back as %+v", i, a.rec)
					}
					seqs[a.rec.Seq] = true
				}
			}
			writes, syncs := g.counts()
			if last := writes[len(writes)-2:]; last[0] != 1 || last[1] != groupSize {
				t.Errorf("the last writes carried %v records, want the held one and then all %d queued behind it in one", last, groupSize)
			}
			if want := 1; synced && syncs-syncsBefore != want {
				t.Errorf("%d fsyncs for the group, want %d", syncs-syncsBefore, want)
			}
			res, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := groupSize + 2; res.Records != want {
				t.Fatalf("%d records verified, want %d", res.Records, want)
			}
			ids := requestIDs(t, path)
			seen := map[string]int{}
			for _, id := range ids {
				seen[id]++
			}
			for i := range groupSize {
				if id := sample(i).RequestID; seen[id] != 1 {
					t.Errorf("request %s is in the log %d times", id, seen[id])
				}
			}
			if st := w.Stats(); st.Records != uint64(res.Records) || st.Failures != 0 || st.LastSeq != res.LastSeq {
				t.Errorf("Stats = %+v, want %d records, none failed", st, res.Records)
			}
			if st := w.Stats(); st.Writes != uint64(len(writes)) {
				t.Errorf("Stats counts %d writes; the file saw %d (%v)", st.Writes, len(writes), writes)
			}
		})
	}
}

// TestGroupFailureFailsEveryone: when the write of a group fails or falls
// short, or its fsync fails, every caller of the group gets the error
// (none may hand out what its record was for), the group is cut off
// again so that the file ends in the last record before it, and the gap
// record of the new file names every record of the group as possibly
// lost. The log verifies.
func TestGroupFailureFailsEveryone(t *testing.T) {
	tests := []struct {
		name   string
		fault  func(d *disk)
		cause  string
		detail string
		cutOff bool // the file ends before the group
	}{
		{"disk full in the middle of the group", func(d *disk) { d.writeErr, d.part = syscall.ENOSPC, 1500 }, CauseWrite, "no space left on device", true},
		{"short write", func(d *disk) { d.short, d.part = true, 700 }, CauseWrite, "short write", true},
		{"write fails outright", func(d *disk) { d.writeErr = syscall.EIO }, CauseWrite, "input/output error", true},
		{"fsync fails", func(d *disk) { d.syncErr = syscall.EIO }, CauseFsync, "fsync after records", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, path, d, g := openGated(t, Options{})
			g.then = func() { d.set(tt.fault) }
			first, got := heldGroup(t, w, g, groupSize, func(i int) (Record, error) {
				if i%2 == 0 {
					return w.AppendUnsynced(sample(i)) // unsynced ones fail with the group too
				}
				return w.Append(sample(i))
			})
			if first.err != nil {
				t.Fatalf("the held record, written before the fault: %v", first.err)
			}
			for i, a := range got {
				if !errors.Is(a.err, ErrUnavailable) || !strings.Contains(a.err.Error(), tt.detail) {
					t.Fatalf("record %d of the failed group: %v, want ErrUnavailable saying %q", i, a.err, tt.detail)
				}
			}
			if st := w.Stats(); st.Failures != groupSize || !st.Broken || st.Cause != tt.cause {
				t.Fatalf("Stats = %+v, want %d failures, broken by %s", st, groupSize, tt.cause)
			}
			if tt.cutOff {
				ls := lines(t, path)
				last, err := parseLine(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")))
				if err != nil || last.Seq != first.rec.Seq {
					t.Fatalf("the file ends in %+v (%v), want the group cut off after record %d", last, err, first.rec.Seq)
				}
			}

			d.repair()
			after, err := w.Append(sample(99))
			if err != nil {
				t.Fatalf("Append once the disk works again: %v", err)
			}
			res, err := Verify(filepath.Dir(path))
			if err != nil {
				t.Fatalf("the log does not verify: %v", err)
			}
			if len(res.Gaps) != 1 {
				t.Fatalf("gaps %+v, want one", res.Gaps)
			}
			gap := res.Gaps[0]
			groupFrom, groupTo := first.rec.Seq+1, first.rec.Seq+groupSize
			if gap.ToSeq != groupTo || gap.FromSeq == 0 || gap.FromSeq > groupFrom || gap.Seq != groupTo+1 || after.Seq != groupTo+2 {
				t.Fatalf("gap %+v after the group %d-%d, then record %d; want the gap to name the whole group", gap, groupFrom, groupTo, after.Seq)
			}
			ids := requestIDs(t, mustFiles(t, filepath.Dir(path))...)
			for i := range groupSize {
				if tt.cutOff && strings.Contains(strings.Join(ids, " "), sample(i).RequestID) {
					t.Errorf("record of %s is in the log after its group was cut off", sample(i).RequestID)
				}
			}
		})
	}
}

// TestGroupRefusesOneTooLong: a record of a group over MaxRecordBytes is
// refused alone; the others are written, and the chain goes on without it.
func TestGroupRefusesOneTooLong(t *testing.T) {
	w, path, _, g := openGated(t, Options{NoSync: true, MaxRecordBytes: 1024})
	const long = 4
	_, got := heldGroup(t, w, g, groupSize, func(i int) (Record, error) {
		r := sample(i)
		if i == long {
			r.Reason = strings.Repeat("x", 2000)
		}
		return w.Append(r)
	})
	for i, a := range got {
		if (i == long) != errors.Is(a.err, ErrRecordTooLong) || i != long && a.err != nil {
			t.Fatalf("record %d: %v", i, a.err)
		}
	}
	res, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := groupSize + 1; res.Records != want || len(res.Gaps) != 0 {
		t.Fatalf("%d records, gaps %v; want %d in one chain", res.Records, res.Gaps, want)
	}
	if st := w.Stats(); st.Failures != 1 {
		t.Errorf("Stats = %+v, want the one failure", st)
	}
}

// TestGroupRotates: a group that would take the file past MaxBytes is
// written up to the record that would, the file rotated, and the rest
// written to the new file; no file is over MaxBytes.
func TestGroupRotates(t *testing.T) {
	w, path, _, g := openGated(t, Options{NoSync: true})
	line := len(mustEncode(t, sample(10))) // every sample's line is as long
	st, _ := os.Stat(path)
	// The start record, the held one and five of the group fit.
	w.mu.Lock()
	w.opts.MaxBytes = st.Size() + int64(6*line)
	w.mu.Unlock()
	_, got := heldGroup(t, w, g, groupSize, func(i int) (Record, error) { return w.AppendUnsynced(sample(10 + i)) })
	for i, a := range got {
		if a.err != nil {
			t.Fatalf("record %d: %v", i, a.err)
		}
	}
	files := mustFiles(t, filepath.Dir(path))
	if len(files) != 3 {
		t.Fatalf("files %v, want the group to fill one file, then the next, and go on in a third", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > w.opts.MaxBytes {
			t.Errorf("%s: %d bytes, over MaxBytes %d", f, fi.Size(), w.opts.MaxBytes)
		}
	}
	res, err := Verify(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if want := groupSize + 2; res.Records != want || len(res.Gaps) != 0 {
		t.Fatalf("%d records, gaps %v; want %d", res.Records, res.Gaps, want)
	}
	writes, _ := g.counts()
	if n := len(writes); writes[n-4] != 1 || writes[n-3]+writes[n-2]+writes[n-1] != groupSize {
		t.Errorf("writes %v: want the held record, then the group in one write for each of the three files", writes)
	}
}

// TestConcurrentAppendAndRotate: many goroutines appending while the log
// rotates by size: every record is in the log once, in one chain, across
// the files, and no file is over MaxBytes.
func TestConcurrentAppendAndRotate(t *testing.T) {
	const goroutines, each, maxBytes = 16, 60, 6 << 10
	w, path := openLog(t, Options{NoSync: true, MaxBytes: maxBytes})
	var wg sync.WaitGroup
	for gr := range goroutines {
		wg.Go(func() {
			for i := range each {
				r := sample(gr*1000 + i)
				var err error
				switch i % 3 {
				case 0:
					err = w.Put(&r, false)
				case 1:
					_, err = w.AppendUnsynced(r)
				default:
					_, err = w.Append(r)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := mustFiles(t, filepath.Dir(path))
	if len(files) < 5 {
		t.Fatalf("%d files, want the log rotated many times", len(files))
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > maxBytes {
			t.Errorf("%s: %d bytes, over MaxBytes", f, fi.Size())
		}
	}
	res, err := Verify(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if want := goroutines*each + 1; res.Records != want || len(res.Gaps) != 0 {
		t.Fatalf("%d records, gaps %v; want %d", res.Records, res.Gaps, want)
	}
	seen := map[string]int{}
	for _, id := range requestIDs(t, files...) {
		seen[id]++
	}
	for gr := range goroutines {
		for i := range each {
			if id := sample(gr*1000 + i).RequestID; seen[id] != 1 {
				t.Fatalf("request %s is in the log %d times", id, seen[id])
			}
		}
	}
}

// TestPutDoesNotAllocate: a record put on the log (the daemon's cached
// path) allocates nothing of its own but the path of the look at the file
// and the chain's new hash: its fields, line and queue entry are reused;
// no encoding/json, no reflection.
func TestPutDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are counted without the race detector, which makes sync.Pool drop buffers")
	}
	w, _ := openLog(t, Options{NoSync: true})
	r := sample(1)
	allocs := testing.AllocsPerRun(200, func() {
		if err := w.Put(&r, false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("Put allocates %.1f times a record, want at most 2 (the stat's path, the hash)", allocs)
	}
	// Append hands the record back, with its line, prev and hash: those,
	// but no more (encoding/json made seven).
	allocs = testing.AllocsPerRun(200, func() {
		if _, err := w.AppendUnsynced(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 4 {
		t.Errorf("AppendUnsynced allocates %.1f times a record, want at most 4", allocs)
	}
}

func mustEncode(t *testing.T, r Record) []byte {
	t.Helper()
	r.Seq, r.Time, r.Prev = 1, time.Date(2026, 11, 24, 15, 4, 5, 1_000_000, time.UTC), strings.Repeat("0f", 32)
	line, err := encodeLine(&r)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func mustFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}
