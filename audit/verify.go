package audit

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// Problem kinds: what Verify found wrong.
const (
	ProblemEdited    = "edited"    // a record does not match its hash, or does not match the next record's prev
	ProblemDeleted   = "deleted"   // records are missing inside a file, or from the end (against an anchor)
	ProblemReordered = "reordered" // records are out of order or repeated, or files overlap
	ProblemMissing   = "missing"   // records between two files, or before the first, are absent
	ProblemTruncated = "truncated" // a file ends in the middle of a line
	ProblemMalformed = "malformed" // a line is not an audit record
)

// Problem is the first thing Verify found wrong with the log.
type Problem struct {
	File   string
	Line   int    // from 1; 0 when the problem concerns the log as a whole
	Seq    uint64 // the record on Line (the one expected there, when the line cannot say), or the first one missing from the end
	Kind   string // one of the Problem kinds
	Detail string // what is wrong, in a sentence
}

// Error prints the problem as FILE:LINE: detail, such as
// "audit.log:42: record 1042 was edited: its hash does not match its content".
func (p *Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Detail)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Detail)
}

// VerifyResult sums up a verified log. LastSeq and LastHash are the anchor
// to keep outside the log: removing records from its end cannot be seen in
// the files alone (see the package documentation).
type VerifyResult struct {
	Records  int // records verified
	Files    int // files read, empty ones included
	FirstSeq uint64
	LastSeq  uint64
	LastHash string
}

// VerifyOptions adjust Verify.
type VerifyOptions struct {
	// FromMiddle accepts a log whose earliest record given is not record 1,
	// for when older rotated files were archived elsewhere. Without it,
	// the absent records are a ProblemMissing.
	FromMiddle bool
	// ExpectHash is the hash of a record seen earlier (a LastHash kept
	// outside the log): the log must still hold that record. It may have
	// grown since.
	ExpectHash string
	// ExpectMinSeq is a seq the log was seen to reach earlier: it must
	// reach it still.
	ExpectMinSeq uint64
}

// Verify checks the hash chain of the audit log in the files given (an
// active file and its rotated files, in any order), or in a directory's
// log, with default options. See VerifyWith.
func Verify(paths ...string) (VerifyResult, error) {
	return VerifyWith(VerifyOptions{}, paths...)
}

// VerifyWith checks the hash chain of the audit log in the files given, or
// in a directory's log (see Files). The files are put in the order of
// their first records and read from the first; each line must match its
// hash, follow the line before it in seq and prev, and end in a newline,
// and the files must join without a gap. It returns the first problem as a
// *Problem, and the result so far.
//
// Verify checks the bytes as they are in the file; it does not marshal
// records again. It reads one line at a time, so a log of any size can be
// verified in little memory.
func VerifyWith(opts VerifyOptions, paths ...string) (VerifyResult, error) {
	if opts.ExpectHash != "" && !isHash(opts.ExpectHash) {
		return VerifyResult{}, fmt.Errorf("verifying the audit log: the expected hash %q is not a SHA-256 in lowercase hex", opts.ExpectHash)
	}
	files, err := Expand(paths...)
	if err != nil {
		return VerifyResult{}, err
	}
	ordered, err := orderFiles(files)
	v := &verifier{opts: opts, res: VerifyResult{Files: len(files)}}
	if err != nil {
		return v.res, err
	}
	for _, f := range ordered {
		if err := v.verifyFile(f); err != nil {
			return v.res, err
		}
	}
	return v.res, v.checkAnchors(files[len(files)-1])
}

// verifier follows the chain across files.
type verifier struct {
	opts        VerifyOptions
	res         VerifyResult
	file        string // of the last record accepted
	line        int    // of the last record accepted
	anchorFound bool
}

func (v *verifier) verifyFile(path string) error {
	next := func() uint64 { return v.res.LastSeq + 1 }
	return scanLines(path, "verifying the audit log", next, func(n int, line []byte) error {
		r, err := parseLine(line)
		if err != nil {
			return lineProblem(path, n, err, next())
		}
		if p := v.link(path, n, r); p != nil {
			return p
		}
		v.accept(path, n, r)
		return nil
	})
}

// link checks that r, on line n of path, follows the record accepted last.
func (v *verifier) link(path string, n int, r Record) *Problem {
	p := &Problem{File: path, Line: n, Seq: r.Seq}
	if v.res.Records == 0 {
		switch {
		case r.Seq == 1 && r.Prev != "":
			p.Kind, p.Detail = ProblemMalformed, "record 1 has a prev hash, but the first record of a log has none"
		case r.Seq == 1, v.opts.FromMiddle && r.Prev != "":
			return nil
		case v.opts.FromMiddle:
			p.Kind, p.Detail = ProblemMalformed, fmt.Sprintf("record %d has no prev hash; only record 1 may be without one", r.Seq)
		case v.reordered(p, 1): // record 1 comes later in the file: p says so
		default:
			p.Kind = ProblemMissing
			p.Detail = fmt.Sprintf("records before %d are missing: the earliest file given starts with it "+
				"(older rotated files absent? to verify from a record in the middle, allow it with --from-middle)", r.Seq)
		}
		return p
	}
	want := v.res.LastSeq + 1
	newFile := path != v.file
	switch {
	case r.Seq == want && r.Prev == v.res.LastHash:
		return nil
	case r.Seq == want:
		prev := fmt.Sprintf("record %d (line %d)", v.res.LastSeq, v.line)
		if newFile {
			prev = fmt.Sprintf("record %d, the last of %s", v.res.LastSeq, filepath.Base(v.file))
		}
		p.Kind = ProblemEdited
		p.Detail = fmt.Sprintf("record %d does not follow %s: its prev is not that record's hash, so one of the two was edited and hashed again, or replaced", r.Seq, prev)
	case r.Seq > want && newFile:
		p.Kind = ProblemMissing
		p.Detail = fmt.Sprintf("%s missing (a rotated file is absent?): %s ends at record %d, and this file starts at record %d",
			recordsAre(want, r.Seq-1), filepath.Base(v.file), v.res.LastSeq, r.Seq)
	case r.Seq > want:
		if !v.reordered(p, want) {
			p.Kind = ProblemDeleted
			p.Detail = fmt.Sprintf("%s missing (deleted): record %d follows record %d", recordsAre(want, r.Seq-1), r.Seq, v.res.LastSeq)
		}
	case newFile:
		p.Kind = ProblemReordered
		p.Detail = fmt.Sprintf("the files overlap: this file starts at record %d, but %s holds records up to %d", r.Seq, filepath.Base(v.file), v.res.LastSeq)
	default:
		p.Kind = ProblemReordered
		p.Detail = fmt.Sprintf("record %d comes after record %d: records were reordered or repeated", r.Seq, v.res.LastSeq)
	}
	return p
}

// reordered tells a reordering from a deletion: when the record expected
// at p's line (want) comes later in the same file, the records were
// moved, not removed. It fills p and reports whether it did.
func (v *verifier) reordered(p *Problem, want uint64) bool {
	at := findSeq(p.File, p.Line, want)
	if at == 0 {
		return false
	}
	p.Kind = ProblemReordered
	p.Detail = fmt.Sprintf("record %d comes before record %d (line %d): records were reordered", p.Seq, want, at)
	return true
}

func (v *verifier) accept(path string, n int, r Record) {
	if v.res.Records == 0 {
		v.res.FirstSeq = r.Seq
	}
	v.res.Records++
	v.res.LastSeq, v.res.LastHash = r.Seq, r.Hash
	v.file, v.line = path, n
	if v.opts.ExpectHash != "" && r.Hash == v.opts.ExpectHash {
		v.anchorFound = true
	}
}

// checkAnchors compares the end of the log with what was seen of it
// before: the only way to notice records removed from its end.
func (v *verifier) checkAnchors(last string) error {
	if v.file != "" {
		last = v.file
	}
	if min := v.opts.ExpectMinSeq; min > v.res.LastSeq {
		return &Problem{File: last, Seq: v.res.LastSeq + 1, Kind: ProblemDeleted,
			Detail: fmt.Sprintf("the log ends at record %d, but it was seen to reach record %d: %s missing from its end (deleted, or the newest file is absent)",
				v.res.LastSeq, min, recordsAre(v.res.LastSeq+1, min))}
	}
	if h := v.opts.ExpectHash; h != "" && !v.anchorFound {
		return &Problem{File: last, Kind: ProblemDeleted,
			Detail: fmt.Sprintf("no record has the expected hash %s: records were deleted from the end, or the log was rewritten (or the file holding that record was not given)", h)}
	}
	return nil
}

// recordsAre words a range of records as the subject of a sentence.
func recordsAre(first, last uint64) string {
	if first == last {
		return fmt.Sprintf("record %d is", first)
	}
	return fmt.Sprintf("records %d-%d are", first, last)
}

// truncated is the problem of a last line without its newline.
func truncated(path string, n int, line []byte, want uint64) *Problem {
	p := &Problem{File: path, Line: n, Seq: want, Kind: ProblemTruncated,
		Detail: "the file ends in a truncated record (a write was interrupted, or the file was cut)"}
	if r, err := parseLine(line); err == nil {
		p.Seq = r.Seq
		p.Detail = fmt.Sprintf("the file ends without a newline after record %d (a write was interrupted, or the file was cut)", r.Seq)
	}
	return p
}

// lineProblem is the problem of a line that is wrong on its own.
func lineProblem(path string, n int, err error, want uint64) error {
	var le *lineError
	if !errors.As(err, &le) {
		return err
	}
	p := &Problem{File: path, Line: n, Seq: cmp.Or(le.seq, want), Kind: le.kind, Detail: le.detail}
	if le.kind == ProblemEdited {
		p.Detail = fmt.Sprintf("record %d was edited: %s", p.Seq, le.detail)
	}
	return p
}

// orderFiles puts files in the order of their first records, leaving out
// empty ones. A file whose first line cannot be read is a problem now: it
// cannot be put in its place.
func orderFiles(files []string) ([]string, error) {
	type first struct {
		path string
		seq  uint64
	}
	var firsts []first
	for _, path := range files {
		seq, err := firstSeq(path)
		if err != nil {
			return nil, err
		}
		if seq > 0 {
			firsts = append(firsts, first{path, seq})
		}
	}
	slices.SortStableFunc(firsts, func(a, b first) int { return cmp.Compare(a.seq, b.seq) })
	ordered := make([]string, len(firsts))
	for i, f := range firsts {
		ordered[i] = f.path
	}
	return ordered, nil
}

// firstSeq returns the seq of a file's first record, 0 for an empty file.
// A record that does not match its hash still has its place by its seq:
// the problem is reported when the file is verified, in order.
func firstSeq(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading the audit log: %w", err)
	}
	defer f.Close()
	line, complete, err := newLineReader(f).next()
	switch {
	case errors.Is(err, io.EOF):
		return 0, nil
	case errors.Is(err, errLineTooLong):
		return 0, &Problem{File: path, Line: 1, Kind: ProblemMalformed, Detail: "not an audit record: " + err.Error()}
	case err != nil:
		return 0, fmt.Errorf("reading the audit log: %s: %w", path, err)
	case !complete:
		return 0, truncated(path, 1, line, 0)
	}
	r, err := parseLine(line)
	var le *lineError
	switch {
	case err == nil:
		return r.Seq, nil
	case errors.As(err, &le) && le.kind == ProblemEdited && le.seq > 0:
		return le.seq, nil
	}
	return 0, lineProblem(path, 1, err, 0)
}

// findSeq returns the number of the first line after line from that holds
// record seq (unchecked), or 0 when there is none or the file cannot be
// read: either way the record is not there to be found.
func findSeq(path string, from int, seq uint64) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	lr := newLineReader(f)
	for {
		line, _, err := lr.next()
		if errors.Is(err, errLineTooLong) {
			continue
		}
		if err != nil {
			return 0
		}
		if lr.line <= from {
			continue
		}
		if r, err := parseLineUnchecked(line); err == nil && r.Seq == seq {
			return lr.line
		}
	}
}
