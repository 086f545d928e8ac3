package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyCatchesTampering: each way of changing a log is found, at the
// line where the chain breaks, with its kind. The log has 10 records, on
// lines 1 to 10.
func TestVerifyCatchesTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, ls [][]byte) [][]byte
		kind   string
		line   int
		seq    uint64
		detail string
	}{
		{"one byte of a scope", func(t *testing.T, ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte("scope0005"), []byte("scope0006"), 1)
			return ls
		}, ProblemEdited, 5, 5, "record 5 was edited: its hash does not match its content"},
		{"a client changed and the hash fixed up", func(t *testing.T, ls [][]byte) [][]byte {
			ls[4] = reseal(t, bytes.Replace(ls[4], []byte(`"client":"billing"`), []byte(`"client":"reports"`), 1))
			return ls
		}, ProblemEdited, 6, 6, "record 6 does not follow record 5 (line 5)"},
		{"the hash itself changed", func(t *testing.T, ls [][]byte) [][]byte {
			i := len(ls[6]) - 4
			ls[6][i] = "01"[boolIndex(ls[6][i] == '0')]
			return ls
		}, ProblemEdited, 7, 7, "record 7 was edited"},
		{"a middle line deleted", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:4], ls[5:]...)
		}, ProblemDeleted, 5, 6, "record 5 is missing (deleted)"},
		{"three lines deleted", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:3], ls[6:]...)
		}, ProblemDeleted, 4, 7, "records 4-6 are missing (deleted)"},
		{"two lines swapped", func(t *testing.T, ls [][]byte) [][]byte {
			ls[3], ls[4] = ls[4], ls[3]
			return ls
		}, ProblemReordered, 4, 5, "record 5 comes before record 4 (line 5)"},
		{"distant lines swapped", func(t *testing.T, ls [][]byte) [][]byte {
			ls[2], ls[7] = ls[7], ls[2]
			return ls
		}, ProblemReordered, 3, 8, "record 8 comes before record 3 (line 8)"},
		{"a line repeated", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:6], append([][]byte{ls[3]}, ls[6:]...)...)
		}, ProblemReordered, 7, 4, "record 4 comes after record 6"},
		{"the first line deleted", func(t *testing.T, ls [][]byte) [][]byte {
			return ls[1:]
		}, ProblemMissing, 1, 2, "records before 2 are missing"},
		{"the first two lines swapped", func(t *testing.T, ls [][]byte) [][]byte {
			ls[0], ls[1] = ls[1], ls[0]
			return ls
		}, ProblemReordered, 1, 2, "record 2 comes before record 1 (line 2)"},
		{"the last line cut in the middle", func(t *testing.T, ls [][]byte) [][]byte {
			ls[9] = ls[9][:len(ls[9])/2]
			return ls
		}, ProblemTruncated, 10, 10, "the file ends in a truncated record"},
		{"the last newline removed", func(t *testing.T, ls [][]byte) [][]byte {
			ls[9] = ls[9][:len(ls[9])-1]
			return ls
		}, ProblemTruncated, 10, 10, "ends without a newline after record 10"},
		{"a line that is not a record", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:3], append([][]byte{[]byte("# comment\n")}, ls[3:]...)...)
		}, ProblemMalformed, 4, 4, "not an audit record"},
		{"an empty line", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:3], append([][]byte{[]byte("\n")}, ls[3:]...)...)
		}, ProblemMalformed, 4, 4, "not an audit record"},
		{"record 1 given a prev", func(t *testing.T, ls [][]byte) [][]byte {
			ls[0] = reseal(t, bytes.Replace(ls[0], []byte(`"prev":""`), []byte(`"prev":"`+strings.Repeat("a", 64)+`"`), 1))
			return ls
		}, ProblemMalformed, 1, 1, "record 1 has a prev hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 10)
			if _, err := Verify(path); err != nil {
				t.Fatalf("the log does not verify before it is changed: %v", err)
			}
			writeFile(t, path, tt.tamper(t, lines(t, path)))
			_, err := Verify(path)
			p := wantProblem(t, err, tt.kind, tt.line, tt.seq, tt.detail)
			if want := path + ":"; !strings.HasPrefix(p.Error(), want) {
				t.Errorf("problem %q does not start with %s", p, want)
			}
		})
	}
}

// TestProblemMessage pins the message format operators and scripts read.
func TestProblemMessage(t *testing.T) {
	p := &Problem{File: "audit.log", Line: 42, Seq: 1042, Kind: ProblemEdited, Detail: "record 1042 was edited: its hash does not match its content"}
	if got, want := p.Error(), "audit.log:42: record 1042 was edited: its hash does not match its content"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	p.Line = 0
	if got, want := p.Error(), "audit.log: record 1042 was edited: its hash does not match its content"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestDeletedFromTheEnd: a log cut after a whole record is a valid,
// shorter chain, which no check of the files alone can tell; an anchor
// kept outside the log can.
func TestDeletedFromTheEnd(t *testing.T) {
	path := writeLog(t, 10)
	anchor, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(t, path)
	writeFile(t, path, ls[:7])
	cut, err := Verify(path)
	if err != nil {
		t.Fatalf("a log cut after a whole record is still a valid chain, but Verify = %v", err)
	}
	if cut.LastSeq != 7 || cut.LastHash == anchor.LastHash {
		t.Fatalf("after cutting 3 records Verify = %+v", cut)
	}

	tests := []struct {
		name   string
		opts   VerifyOptions
		seq    uint64
		detail string
	}{
		{"min seq", VerifyOptions{ExpectMinSeq: anchor.LastSeq}, 8, "the log ends at record 7, but it was seen to reach record 10: records 8-10 are missing from its end"},
		{"last hash", VerifyOptions{ExpectHash: anchor.LastHash}, 0, "no record has the expected hash " + anchor.LastHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyWith(tt.opts, path)
			p := wantProblem(t, err, ProblemDeleted, 0, tt.seq, tt.detail)
			if p.File != path {
				t.Errorf("problem names %s, want %s", p.File, path)
			}
		})
	}

	// The anchors hold for a log that was not cut, also after it grew.
	writeFile(t, path, ls)
	w, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	w.Append(sample(11))
	w.Close()
	if res, err := VerifyWith(VerifyOptions{ExpectHash: anchor.LastHash, ExpectMinSeq: anchor.LastSeq}, path); err != nil || res.LastSeq != 12 {
		t.Fatalf("a grown log against its anchors: %+v, %v", res, err)
	}
}

// TestVerifyFromMiddle: a log whose older files were archived verifies
// only when that is allowed, and the records before are then unchecked.
func TestVerifyFromMiddle(t *testing.T) {
	path := writeLog(t, 10)
	writeFile(t, path, lines(t, path)[4:])
	_, err := Verify(path)
	wantProblem(t, err, ProblemMissing, 1, 5, "records before 5 are missing")
	res, err := VerifyWith(VerifyOptions{FromMiddle: true}, path)
	if err != nil || res.FirstSeq != 5 || res.Records != 6 {
		t.Fatalf("VerifyWith(FromMiddle) = %+v, %v", res, err)
	}
}

// TestVerifyEmpty: an empty log is a chain of no records; only an anchor
// can say that it should hold some.
func TestVerifyEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, nil, 0o600)
	res, err := Verify(path)
	if err != nil || res.Records != 0 || res.Files != 1 {
		t.Fatalf("Verify(empty) = %+v, %v", res, err)
	}
	_, err = VerifyWith(VerifyOptions{ExpectMinSeq: 3}, path)
	wantProblem(t, err, ProblemDeleted, 0, 1, "records 1-3 are missing from its end")
	if _, err := Verify(filepath.Join(t.TempDir(), "absent.log")); err == nil {
		t.Error("Verify of a file that does not exist succeeded")
	}
}
