package audit

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRotateBySize: files stay under MaxBytes, their names say which
// records they hold, and the chain runs through all of them.
func TestRotateBySize(t *testing.T) {
	const maxBytes = 2000
	w, path := openLog(t, Options{NoSync: true, MaxBytes: maxBytes})
	for i := 2; i <= 31; i++ {
		if _, err := w.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	dir := filepath.Dir(path)
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 || files[len(files)-1] != path {
		t.Fatalf("Files = %q, want several rotated files, then %s", files, path)
	}
	for _, f := range files[:len(files)-1] {
		rf, ok := parseRotated(dir, filepath.Base(f))
		if !ok || rf.base != "audit" {
			t.Fatalf("%s is not named as a rotated file of audit.log", f)
		}
		ls := lines(t, f)
		first, _ := parseLine(ls[0][:len(ls[0])-1])
		last, _ := parseLine(ls[len(ls)-1][:len(ls[len(ls)-1])-1])
		if first.Seq != rf.first || last.Seq != rf.last {
			t.Errorf("%s holds records %d-%d", filepath.Base(f), first.Seq, last.Seq)
		}
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > maxBytes {
			t.Errorf("%s has %d bytes, over MaxBytes", f, fi.Size())
		}
	}
	res, err := Verify(dir)
	if err != nil || res.Records != 31 || res.Files != len(files) || res.LastSeq != 31 {
		t.Fatalf("Verify(dir) = %+v, %v", res, err)
	}
	shuffled := slices.Clone(files)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if res2, err := Verify(shuffled...); err != nil || !reflect.DeepEqual(res2, res) {
		t.Fatalf("Verify(files in any order) = %+v, %v; want %+v", res2, err, res)
	}
	if res2, err := Verify(append(shuffled, dir, path)...); err != nil || res2.Records != res.Records {
		t.Fatalf("Verify(files named twice) = %+v, %v", res2, err)
	}

	// A rotated file deleted: in the middle, the records it held are
	// missing; at the start, the records before the first file.
	os.Rename(files[2], files[2]+".away")
	_, err = Verify(dir)
	rf, _ := parseRotated(dir, filepath.Base(files[2]))
	p := wantProblem(t, err, ProblemMissing, 1, rf.last+1, recordsAre(rf.first, rf.last)+" missing (a rotated file is absent?)")
	if p.File != files[3] {
		t.Errorf("problem in %s, want %s", p.File, files[3])
	}
	os.Rename(files[2]+".away", files[2])
	os.Remove(files[0])
	_, err = Verify(dir)
	rf, _ = parseRotated(dir, filepath.Base(files[1]))
	wantProblem(t, err, ProblemMissing, 1, rf.first, "records before")

	// Files that overlap, as when a file is copied under another name.
	data, _ := os.ReadFile(files[1])
	os.WriteFile(filepath.Join(dir, "copy.log"), data, 0o600)
	_, err = VerifyWith(VerifyOptions{FromMiddle: true}, files[1], files[2], filepath.Join(dir, "copy.log"), files[3])
	wantProblem(t, err, ProblemReordered, 1, rf.first, "the files overlap")
}

// TestRotateByAge: a file is rotated once its first record is MaxAge old,
// and named for the time of the rotation.
func TestRotateByAge(t *testing.T) {
	c := newClock()
	w, path := openLog(t, Options{NoSync: true, MaxAge: time.Hour, Now: c.Now})
	w.Append(sample(2))
	c.Advance(30 * time.Minute)
	w.Append(sample(3))
	c.Advance(31 * time.Minute)
	w.Append(sample(4)) // rotates 1-3 first
	c.Advance(2 * time.Hour)
	w.Append(sample(5)) // rotates 4 first
	w.Close()
	dir := filepath.Dir(path)
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"audit.000000000001-000000000003.20261124T160505Z.log", "audit.000000000004-000000000004.20261124T180505Z.log", "audit.log"}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	if res, err := Verify(dir); err != nil || res.Records != 5 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

// TestReopenAfterInterruptedRotation: a crash between the rename and the
// first record of the new file loses and repeats nothing: Open continues
// from the newest rotated file.
func TestReopenAfterInterruptedRotation(t *testing.T) {
	tests := []struct {
		name    string
		after   func(t *testing.T, path, rotated string)
		refused string
	}{
		{"renamed, no new file", func(*testing.T, string, string) {}, ""},
		{"renamed, new file empty", func(t *testing.T, path, _ string) { os.WriteFile(path, nil, 0o600) }, ""},
		{"rotated file's name does not match its records", func(t *testing.T, _, rotated string) {
			os.Rename(rotated, strings.Replace(rotated, "-000000000005.", "-000000000009.", 1))
		}, "ends at record 5, not at 9"},
		{"active file repeats the rotated records", func(t *testing.T, path, rotated string) {
			data, _ := os.ReadFile(rotated)
			os.WriteFile(path, data, 0o600)
		}, "already holds records up to 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 5)
			rotated := rotatedName(path, 1, 5, time.Now())
			if err := os.Rename(path, rotated); err != nil {
				t.Fatal(err)
			}
			tt.after(t, path, rotated)
			w, err := Open(Options{Path: path})
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("Open = %v, want a refusal saying %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			ls := lines(t, path)
			start, _ := parseLine(ls[0][:len(ls[0])-1])
			if len(ls) != 1 || start.Seq != 6 || start.Kind != KindStart {
				t.Fatalf("the new file holds %d lines, the first %+v; want the start record 6", len(ls), start)
			}
			if res, err := Verify(filepath.Dir(path)); err != nil || res.Records != 6 {
				t.Fatalf("Verify = %+v, %v", res, err)
			}
		})
	}
}

// TestRotationFailure: a rotation that cannot be done fails the Append,
// and the next Append rotates and continues the chain.
func TestRotationFailure(t *testing.T) {
	c := newClock()
	w, path := openLog(t, Options{NoSync: true, MaxBytes: 1, Now: c.Now})
	blocker := rotatedName(path, 1, 1, time.Date(2026, 11, 24, 15, 4, 5, 0, time.UTC))
	if err := os.Mkdir(blocker, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(sample(2)); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("Append with the rotated name taken = %v", err)
	}
	os.Remove(blocker)
	r, err := w.Append(sample(2))
	if err != nil || r.Seq != 2 {
		t.Fatalf("Append after the failed rotation = %+v, %v", r, err)
	}
	w.Close()
	if res, err := Verify(filepath.Dir(path)); err != nil || res.Records != 2 || res.Files != 2 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

// TestFiles: a directory stands for the one log in it.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Files(dir); err == nil || !strings.Contains(err.Error(), "holds no audit log") {
		t.Errorf("Files(empty dir) = %v", err)
	}
	for _, name := range []string{"audit.log", "audit.log.lock", ".audit.log.swp", "audit.000000000001-000000000009.20261124T150405Z.log", "notes.txt"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
	}
	files, err := Files(dir)
	if want := []string{filepath.Join(dir, "audit.000000000001-000000000009.20261124T150405Z.log"), filepath.Join(dir, "audit.log")}; err != nil || !slices.Equal(files, want) {
		t.Errorf("Files = %q, %v; want %q", files, err, want)
	}
	os.WriteFile(filepath.Join(dir, "other.log"), nil, 0o600)
	if _, err := Files(dir); err == nil || !strings.Contains(err.Error(), "more than one log (audit.log, other.log)") {
		t.Errorf("Files(two logs) = %v", err)
	}
}
