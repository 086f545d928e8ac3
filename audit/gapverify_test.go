package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// logWithGap makes a log whose fsync of record 4 failed: records 1-4 in a
// rotated file (3 and 4 unconfirmed), gap record 5 and record 6 in the
// active file. It returns the active file and the rotated one.
func logWithGap(t *testing.T) (active, old string) {
	t.Helper()
	w, path, d, _ := openFaulty(t, Options{})
	w.Append(sample(2))
	w.AppendUnsynced(sample(3))
	d.set(func(d *disk) { d.syncErr = syscall.EIO })
	if _, err := w.Append(sample(4)); err == nil {
		t.Fatal("Append succeeded although fsync failed")
	}
	d.repair()
	if _, err := w.Append(sample(6)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, rotatedFiles(t, path)[0]
}

// TestVerifyGapProblems: a gap record accounts for the records it names,
// and for nothing else: a gap record that was edited, moved, or does not
// fit the records before it is a problem like any other.
func TestVerifyGapProblems(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, active, old string)
		file   func(active, old string) string
		kind   string
		line   int
		seq    uint64
		detail string
	}{
		{"the gap record edited", func(t *testing.T, active, old string) {
			ls := lines(t, active)
			ls[0] = bytes.Replace(ls[0], []byte(`"from_seq":3`), []byte(`"from_seq":4`), 1)
			writeFile(t, active, ls)
		}, onActive, ProblemEdited, 1, 5, "record 5 was edited"},
		{"the gap record hashed again with another prev", func(t *testing.T, active, old string) {
			ls := lines(t, active)
			r, _ := parseLine(bytes.TrimSuffix(ls[0], []byte("\n")))
			ls[0] = reseal(t, bytes.Replace(ls[0], []byte(r.Prev), []byte(strings.Repeat("ab", 32)), 1))
			writeFile(t, active, ls)
		}, onActive, ProblemEdited, 1, 5, "gap record 5 does not follow record 4"},
		{"the gap record in the middle of a file", func(t *testing.T, active, old string) {
			data, _ := os.ReadFile(active)
			appendTo(t, old, data)
			os.Remove(active)
		}, onOld, ProblemMalformed, 5, 5, "a gap record opens its file"},
		{"a range that does not end before it", func(t *testing.T, active, old string) {
			ls := lines(t, active)
			ls[0] = reseal(t, bytes.Replace(ls[0], []byte(`"to_seq":4`), []byte(`"to_seq":3`), 1))
			writeFile(t, active, ls)
		}, onActive, ProblemMalformed, 1, 5, "gap record 5 names records 3-3"},
		{"a synced record before the range deleted", func(t *testing.T, active, old string) {
			writeFile(t, old, lines(t, old)[:1])
		}, onActive, ProblemMissing, 1, 5, "record 2 is missing: audit.000000000001-000000000004."},
		{"the file before the gap deleted", func(t *testing.T, active, old string) { os.Remove(old) },
			onActive, ProblemMissing, 1, 5, "records before 5 are missing"},
		{"a record added after the range", func(t *testing.T, active, old string) {
			ls := lines(t, old)
			last, _ := parseLine(bytes.TrimSuffix(ls[len(ls)-1], []byte("\n")))
			extra := sample(50)
			extra.Seq, extra.Time, extra.Prev = 5, last.Time, last.Hash
			line, _ := encodeLine(&extra)
			appendTo(t, old, line)
		}, onActive, ProblemReordered, 1, 5, "the files overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			active, old := logWithGap(t)
			if res, err := Verify(filepath.Dir(active)); err != nil || len(res.Gaps) != 1 {
				t.Fatalf("the log does not verify with its gap before it is changed: %+v, %v", res, err)
			}
			tt.tamper(t, active, old)
			_, err := Verify(filepath.Dir(active))
			p := wantProblem(t, err, tt.kind, tt.line, tt.seq, tt.detail)
			if want := tt.file(active, old); p.File != want {
				t.Errorf("problem in %s, want %s", p.File, want)
			}
		})
	}
}

func onActive(active, old string) string { return active }
func onOld(active, old string) string    { return old }
