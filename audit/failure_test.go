package audit

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
)

// disk is a pretend disk's faults, applied to every file the Writer opens
// on it: a new file fails as the old one does until the disk is repaired.
type disk struct {
	mu       sync.Mutex
	writeErr error // returned by Write, after writing the first part bytes
	part     int
	short    bool // Write writes part bytes and says nothing
	syncErr  error
	truncErr error
	opened   int // files opened
}

func (d *disk) repair() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writeErr, d.part, d.short, d.syncErr, d.truncErr = nil, 0, false, nil, nil
}

func (d *disk) set(fault func(d *disk)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fault(d)
}

// faultyFile is a real file on the pretend disk.
type faultyFile struct {
	*os.File
	d *disk
}

func (f *faultyFile) Write(p []byte) (int, error) {
	f.d.mu.Lock()
	writeErr, part, short := f.d.writeErr, f.d.part, f.d.short
	f.d.mu.Unlock()
	switch {
	case short:
		return f.File.Write(p[:min(part, len(p))])
	case writeErr == nil:
		return f.File.Write(p)
	}
	n, err := f.File.Write(p[:min(part, len(p))])
	if err != nil {
		return n, err
	}
	return n, writeErr
}

func (f *faultyFile) Sync() error {
	f.d.mu.Lock()
	err := f.d.syncErr
	f.d.mu.Unlock()
	if err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	f.d.mu.Lock()
	err := f.d.truncErr
	f.d.mu.Unlock()
	if err != nil {
		return err
	}
	return f.File.Truncate(size)
}

// events collects what a Writer tells OnChange.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) list() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.all)
}

// fastRetry lets the next call after a failure try a new file at once.
var fastRetry = &backoff.Policy{}

// openFaulty opens a log on a pretend disk, with OnChange collected.
func openFaulty(t *testing.T, opts Options) (*Writer, string, *disk, *events) {
	t.Helper()
	d, evs := &disk{}, &events{}
	opts.openFile = func(path string) (file, error) {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.opened++
		d.mu.Unlock()
		return &faultyFile{File: f, d: d}, nil
	}
	opts.OnChange = evs.add
	if opts.retry == nil {
		opts.retry = fastRetry
	}
	w, path := openLog(t, opts)
	return w, path, d, evs
}

// names lists a directory.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range entries {
		ns = append(ns, e.Name())
	}
	return ns
}

// firstRecordOf reads and checks the first line of a file.
func firstRecordOf(t *testing.T, path string) Record {
	t.Helper()
	ls := lines(t, path)
	r, err := parseLine(bytes.TrimSuffix(ls[0], []byte("\n")))
	if err != nil {
		t.Fatalf("%s:1: %v", path, err)
	}
	return r
}

// rotatedFiles are the log's files but the active one.
func rotatedFiles(t *testing.T, path string) []string {
	t.Helper()
	files, err := Files(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(files, func(f string) bool { return f == path })
}

// TestFailureOpensNewFile: a failed write or fsync breaks the Writer: no
// record is taken, and attempts on the failing disk leave the log as it
// is; once the disk works, the next record is preceded by a gap record at
// the start of a new file, naming the records that may be lost since the
// last good fsync, and the log verifies with that gap and no problem.
//
// Each log holds the start record 1, record 2 synced and record 3 not;
// then the append of record 4, synced, fails.
func TestFailureOpensNewFile(t *testing.T) {
	tests := []struct {
		name             string
		fault            func(d *disk)
		cause            string
		from             uint64 // the gap record's FromSeq
		lostFrom, lostTo uint64 // what Verify then finds missing
		detail           string // in the gap's Detail
	}{
		{"disk full after part of the line", func(d *disk) { d.writeErr, d.part = syscall.ENOSPC, 40 }, CauseWrite, 4, 4, 4, "writing record 4 failed: no space left on device"},
		{"write fails outright", func(d *disk) { d.writeErr = fs.ErrPermission }, CauseWrite, 4, 4, 4, "writing record 4 failed: permission denied"},
		{"short write without an error", func(d *disk) { d.short, d.part = true, 25 }, CauseWrite, 4, 4, 4, "short write"},
		{"write fails, and so does truncate, with nothing written", func(d *disk) { d.writeErr, d.truncErr = syscall.ENOSPC, syscall.EIO }, CauseWrite, 4, 4, 4, "record 4 is lost"},
		{"write fails after part of the line, which cannot be cut off", func(d *disk) {
			d.writeErr, d.part, d.truncErr = syscall.ENOSPC, 40, syscall.EIO
		}, CauseWrite, 4, 4, 4, "line 4: the file ends in a truncated record"},
		// The fsync of record 4 failed: records 3 and 4 may be gone from
		// the disk. Here they are still there (the test's disk drops no
		// page), which Verify says; TestFsyncFailureLosesRecords drops them.
		{"fsync fails", func(d *disk) { d.syncErr = syscall.EIO }, CauseFsync, 3, 0, 0, "fsync after record 4 failed: input/output error; none is lost: all of records 3-4 are in audit.000000000001-000000000004."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, path, d, evs := openFaulty(t, Options{})
			dir := filepath.Dir(path)
			if _, err := w.Append(sample(2)); err != nil {
				t.Fatal(err)
			}
			if _, err := w.AppendUnsynced(sample(3)); err != nil {
				t.Fatal(err)
			}
			d.set(tt.fault)
			_, err := w.Append(sample(4))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Append on a failing disk = %v, want ErrUnavailable", err)
			}
			if st := w.Stats(); !st.Broken || st.Final || st.Cause != tt.cause {
				t.Fatalf("Stats after the failure = %+v, want broken by %s, not for good", st, tt.cause)
			}

			// While the disk fails, the attempts at a new file fail too, and
			// leave the log as it was: no file, nothing written.
			before, _ := os.ReadFile(path)
			beforeNames := names(t, dir)
			for range 3 {
				if _, err := w.Append(sample(5)); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Append while the disk still fails = %v", err)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Errorf("attempts on a failing disk changed the file:\n%s", after)
			}
			if after := names(t, dir); !slices.Equal(after, beforeNames) {
				t.Errorf("attempts on a failing disk left files: %q, before %q", after, beforeNames)
			}

			d.repair()
			r, err := w.Append(sample(6))
			if err != nil {
				t.Fatalf("Append once the disk works: %v", err)
			}
			if r.Seq != 6 {
				t.Errorf("the first record after the gap has seq %d, want 6 (record 4 failed, 5 is the gap record)", r.Seq)
			}
			gap := firstRecordOf(t, path)
			if gap.Kind != KindGap || gap.Seq != 5 || gap.ToSeq != 4 || gap.FromSeq != tt.from || gap.Cause != tt.cause {
				t.Fatalf("the new file opens with %+v, want gap record 5 for records %d-4, %s", gap, tt.from, tt.cause)
			}
			rotated := rotatedFiles(t, path)
			if len(rotated) != 1 || filepath.Base(rotated[0]) != gap.File {
				t.Fatalf("rotated files %q; the gap record names %q", rotated, gap.File)
			}
			if _, err := os.Stat(nextPath(path)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the new file's draft is left: %v", err)
			}

			res, err := Verify(dir)
			if err != nil {
				t.Fatalf("Verify after the gap: %v", err)
			}
			if len(res.Gaps) != 1 || res.LastSeq != 6 {
				t.Fatalf("Verify = %+v, want one gap and records up to 6", res)
			}
			g := res.Gaps[0]
			if g.Seq != 5 || g.File != path || g.Cause != tt.cause || g.LostFrom != tt.lostFrom || g.LostTo != tt.lostTo || !strings.Contains(g.Detail, tt.detail) {
				t.Errorf("gap = %+v\nwant lost %d-%d, %s, saying %q", g, tt.lostFrom, tt.lostTo, tt.cause, tt.detail)
			}
			if st := w.Stats(); st.Broken || st.Gaps != 1 || st.LastSeq != 6 {
				t.Errorf("Stats after the new file = %+v", st)
			}
			ev := evs.list()
			if len(ev) != 2 || !ev[0].Broken || ev[0].Cause != tt.cause || ev[0].Err == nil || ev[1].Broken || ev[1].Gap == nil || ev[1].Gap.Seq != 5 {
				t.Errorf("OnChange was told %+v, want broken by %s, then taking records again after gap record 5", ev, tt.cause)
			}

			// A restart continues after the gap.
			w.Close()
			w2, err := Open(Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			w2.Close()
			if res, err := Verify(dir); err != nil || len(res.Gaps) != 1 || res.LastSeq != 7 {
				t.Fatalf("Verify after a restart = %+v, %v", res, err)
			}
		})
	}
}

// TestFsyncFailureLosesRecords: after a failed fsync the kernel may have
// dropped the records since the last good one, although a later fsync
// succeeds. So the gap names them all, and Verify accounts for whatever
// is left of them, as lost rather than deleted, but not for a synced
// record that is missing.
func TestFsyncFailureLosesRecords(t *testing.T) {
	w, path, d, _ := openFaulty(t, Options{})
	for i := 2; i <= 3; i++ {
		if _, err := w.Append(sample(i)); err != nil { // 2 and 3 synced
			t.Fatal(err)
		}
	}
	for i := 4; i <= 6; i++ {
		if _, err := w.AppendUnsynced(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	d.set(func(d *disk) { d.syncErr = syscall.EIO })
	if _, err := w.Append(sample(7)); err == nil {
		t.Fatal("Append succeeded although fsync failed")
	}
	failed, _ := os.ReadFile(path)
	d.repair()
	if _, err := w.Append(sample(9)); err != nil { // after gap record 8
		t.Fatal(err)
	}
	w.Close()
	old := rotatedFiles(t, path)[0]
	if data, _ := os.ReadFile(old); !bytes.Equal(data, failed) {
		t.Fatal("the file whose fsync failed was written to again: a later fsync of it proves nothing")
	}
	if g := firstRecordOf(t, path); g.FromSeq != 4 || g.ToSeq != 7 {
		t.Fatalf("gap record %+v, want records 4-7 (since the last good fsync, of record 3)", g)
	}
	ls := lines(t, old)
	tests := []struct {
		name             string
		old              [][]byte // what the disk kept of the old file
		lostFrom, lostTo uint64
		problem          string // a problem Verify must report instead of the gap
	}{
		{"all of them kept", ls, 0, 0, ""},
		{"the last two dropped", ls[:5], 6, 7, ""},
		{"all unsynced dropped", ls[:3], 4, 7, ""},
		{"a dropped page reads as zeros", append(slices.Clone(ls[:4]), bytes.Repeat([]byte{0}, 300)), 5, 7, ""},
		{"record 4 cut in the middle", append(slices.Clone(ls[:3]), ls[3][:30]), 4, 7, ""},
		{"a synced record missing too", ls[:2], 0, 0, "record 3 is missing: audit.000000000001-000000000007"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, old, tt.old)
			res, err := Verify(filepath.Dir(path))
			if tt.problem != "" {
				wantProblem(t, err, ProblemMissing, 1, 8, tt.problem)
				return
			}
			if err != nil {
				t.Fatalf("Verify = %v, want the gap explained", err)
			}
			if len(res.Gaps) != 1 || res.Gaps[0].LostFrom != tt.lostFrom || res.Gaps[0].LostTo != tt.lostTo {
				t.Fatalf("gaps %+v, want records %d-%d lost", res.Gaps, tt.lostFrom, tt.lostTo)
			}
			var found []uint64
			if err := Query([]string{filepath.Dir(path)}, Filter{}, func(r Record) error {
				found = append(found, r.Seq)
				return nil
			}); err != nil {
				t.Fatalf("Query of the log with the gap: %v", err)
			}
			if found[len(found)-1] != 9 || slices.Contains(found, cmpOr(tt.lostFrom, 100)) {
				t.Errorf("Query found records %v", found)
			}
		})
	}
}

func cmpOr(a, b uint64) uint64 {
	if a != 0 {
		return a
	}
	return b
}

// TestRecoveryBacksOff: a failing disk is not asked for a new file on
// every Append, but at growing intervals; Check makes the attempt too, so
// that the Writer recovers without a request.
func TestRecoveryBacksOff(t *testing.T) {
	clk := newClock()
	w, _, d, _ := openFaulty(t, Options{Now: clk.Now, retry: &backoff.Policy{Initial: time.Minute, Max: time.Hour}})
	d.set(func(d *disk) { d.syncErr = syscall.EIO })
	if _, err := w.Append(sample(2)); err == nil {
		t.Fatal("Append succeeded although fsync failed")
	}
	opened := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.opened
	}
	n := opened()
	for range 20 {
		w.Append(sample(3))
	}
	clk.Advance(50 * time.Second)
	w.Check()
	if opened() != n {
		t.Fatalf("%d attempts at a new file within the first minute", opened()-n)
	}
	clk.Advance(2 * time.Minute) // past Initial + the first jitter (at most Initial)
	w.Append(sample(4))
	if opened() != n+1 {
		t.Fatalf("%d attempts after the back-off, want 1", opened()-n)
	}
	d.repair()
	clk.Advance(time.Hour + time.Minute)
	if err := w.Check(); err != nil {
		t.Fatalf("Check once the disk works: %v", err)
	}
	if st := w.Stats(); st.Broken || st.Gaps != 1 {
		t.Fatalf("Stats after Check = %+v, want recovered by one gap", st)
	}
}

// TestAppendUnsyncedDoesNotWaitForTheDisk: with fsync failing, a record
// appended unsynced is written and in the chain, and a synced one is not;
// the gap that follows names both.
func TestAppendUnsyncedDoesNotWaitForTheDisk(t *testing.T) {
	w, path, d, _ := openFaulty(t, Options{})
	d.set(func(d *disk) { d.syncErr = syscall.EIO })
	if _, err := w.AppendUnsynced(sample(2)); err != nil {
		t.Fatalf("AppendUnsynced with fsync failing: %v", err)
	}
	if w.Stats().Broken {
		t.Fatal("an unsynced record broke the Writer")
	}
	if _, err := w.Append(sample(3)); err == nil {
		t.Fatal("Append succeeded although fsync fails")
	}
	d.repair()
	if _, err := w.Append(sample(5)); err != nil {
		t.Fatal(err)
	}
	if g := firstRecordOf(t, path); g.FromSeq != 2 || g.ToSeq != 3 {
		t.Fatalf("gap record %+v, want records 2-3", g)
	}
	if res, err := Verify(filepath.Dir(path)); err != nil || res.Records != 5 || len(res.Gaps) != 1 {
		t.Fatalf("Verify = %+v, %v; want 5 records and a gap", res, err)
	}
}

// TestCloseRecordsTheGap: a Writer closed while broken writes its gap
// record first if the disk lets it, so that a restart does not forget the
// failure; if the disk does not, the log is left as it was.
func TestCloseRecordsTheGap(t *testing.T) {
	for _, repaired := range []bool{true, false} {
		t.Run(map[bool]string{true: "disk repaired", false: "disk still failing"}[repaired], func(t *testing.T) {
			w, path, d, _ := openFaulty(t, Options{retry: &backoff.Policy{Initial: time.Hour}})
			d.set(func(d *disk) { d.syncErr = syscall.EIO })
			if _, err := w.Append(sample(2)); err == nil {
				t.Fatal("Append succeeded although fsync failed")
			}
			if repaired {
				d.repair()
			}
			err := w.Close()
			if repaired != (err == nil) {
				t.Fatalf("Close = %v", err)
			}
			res, err := Verify(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			if repaired && (len(res.Gaps) != 1 || res.Gaps[0].FromSeq != 2) {
				t.Fatalf("after Close: %+v, want the gap of record 2 on record", res)
			}
			if !repaired && (len(res.Gaps) != 0 || res.LastSeq != 2) {
				t.Fatalf("after Close on a failing disk: %+v, want the log as it was", res)
			}
		})
	}
}

// TestRotationFsyncFails: the fsync before a rotation is an fsync like
// any other: its failure breaks the Writer, and the file is not renamed
// as a full one but ended by a gap.
func TestRotationFsyncFails(t *testing.T) {
	w, path, d, _ := openFaulty(t, Options{NoSync: true, MaxBytes: 1500})
	var err error
	for i := 2; err == nil && i < 100; i++ {
		if i == 4 {
			d.set(func(d *disk) { d.syncErr = syscall.EIO })
		}
		_, err = w.Append(sample(i))
	}
	if !errors.Is(err, ErrUnavailable) || w.Stats().Cause != CauseFsync {
		t.Fatalf("Append = %v, stats %+v; want the rotation's failed fsync", err, w.Stats())
	}
	d.repair()
	if _, err := w.Append(sample(100)); err != nil {
		t.Fatal(err)
	}
	if res, err := Verify(filepath.Dir(path)); err != nil || len(res.Gaps) != 1 || res.Gaps[0].Cause != CauseFsync {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

// TestGapHandedOn: when a file that opens with a gap record is deleted in
// turn, the new gap record names the first one's range too, so that the
// records the lost gap record accounted for are not found missing
// unexplained; also after a restart in between.
func TestGapHandedOn(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "same run", true: "after a restart"}[restart], func(t *testing.T) {
			w, path, d, _ := openFaulty(t, Options{})
			w.AppendUnsynced(sample(2))
			d.set(func(d *disk) { d.syncErr = syscall.EIO })
			w.Append(sample(3)) // fails: records 2-3 may be lost
			d.repair()
			if _, err := w.Append(sample(5)); err != nil { // after gap record 4
				t.Fatal(err)
			}
			if restart {
				w.Close()
				var err error
				if w, err = Open(Options{Path: path}); err != nil { // start record 6
					t.Fatal(err)
				}
				defer w.Close()
			}
			os.Remove(path)
			if _, err := w.Append(sample(9)); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Append after the deletion = %v", err)
			}
			g := firstRecordOf(t, path)
			if g.FromSeq != 2 || !strings.Contains(g.Reason, "opened with gap record 4, which named records from 2 on") {
				t.Fatalf("the second gap record %+v, want it to name records from 2 on", g)
			}
			res, err := Verify(filepath.Dir(path))
			if err != nil || len(res.Gaps) != 1 || res.Gaps[0].LostFrom != 4 || res.Gaps[0].LostTo != g.ToSeq {
				t.Fatalf("Verify = %+v, %v; want the records from gap record 4 on lost", res, err)
			}
		})
	}
}
