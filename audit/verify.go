package audit

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
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
	// Gaps are the gap records found, in order. The chain holds across
	// each, but the log is not complete: a log with gaps verifies (no
	// error), and a caller that must know that every record is there
	// checks that Gaps is empty.
	Gaps []Gap
}

// Gap is a gap record that Verify found, and what the files show of the
// records it names. Verify checked what can be checked: that every record
// before FromSeq is in the log, that what is left of the range follows
// them, and that the gap record follows the last record of the range when
// that one is there. What the record says happened is the daemon's word.
type Gap struct {
	File    string // the file the gap record opens (on its line 1)
	Seq     uint64 // the gap record's seq
	Time    time.Time
	Cause   string // as the record says: one of the Cause constants
	FromSeq uint64 // as the record says: the first record that may be lost, 0 for none
	ToSeq   uint64 // as the record says: the last record before the gap record
	// LostFrom to LostTo are the records of the range that the log does
	// not hold (both 0 when it holds all of them).
	LostFrom, LostTo uint64
	// Foreign counts the bytes someone else appended to the file before,
	// which Verify left unread.
	Foreign int64
	// Detail says all of it in a sentence.
	Detail string
}

// String prints the gap as FILE:1: detail, like a Problem.
func (g Gap) String() string { return fmt.Sprintf("%s:1: %s", g.File, g.Detail) }

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
		if err := v.verifyFile(f.path, f.next); err != nil {
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
	// What the file before the current one showed past the Writer's last
	// good record, for the gap record that opens the current one.
	before, after fileTail
}

// fileTail is what a file held past the records a gap record says may be
// lost: the problem that ended it early, and bytes that were not the
// Writer's.
type fileTail struct {
	damage  *Problem
	foreign int64
}

func (v *verifier) verifyFile(path string, next *Record) error {
	v.before, v.after = v.after, fileTail{}
	want := func() uint64 { return v.res.LastSeq + 1 }
	seg := segmentOf(path, next)
	err := scanLines(path, "verifying the audit log", seg.limit, want, func(n int, line []byte) error {
		r, err := parseLine(line)
		if err != nil {
			return lineProblem(path, n, err, want())
		}
		if p := v.link(path, n, r); p != nil {
			return p
		}
		v.accept(path, n, r)
		return nil
	})
	// The records the next file's gap record says may be lost may be cut
	// short, garbled or missing here: that ends this file, and the gap
	// record says what is left.
	var p *Problem
	if errors.As(err, &p) && seg.excuses(want()) {
		v.after.damage, err = p, nil
	}
	if err == nil && seg.limit >= 0 {
		if st, serr := os.Stat(path); serr == nil && st.Size() > seg.limit {
			v.after.foreign = st.Size() - seg.limit
		}
	}
	return err
}

// segment is how much of a file the Writer vouches for, as the gap record
// opening the next file says: at most limit bytes (-1: all), and records
// from seq from on (0: none) only as far as they go.
type segment struct {
	limit int64
	from  uint64
}

func segmentOf(path string, next *Record) segment {
	s := segment{limit: -1}
	if next == nil {
		return s
	}
	s.from = next.FromSeq
	// Someone else wrote to the file: the Writer's part of it is the size
	// it had written, whatever comes after (records that chain on, even).
	if (next.Cause == CauseAppended || next.Cause == CauseTruncated) && next.Size > 0 && next.File == filepath.Base(path) {
		s.limit = next.Size
	}
	return s
}

// excuses says whether a problem where record seq was due is one the gap
// record accounts for.
func (s segment) excuses(seq uint64) bool { return s.from > 0 && seq >= s.from }

// link checks that r, on line n of path, follows the record accepted last.
func (v *verifier) link(path string, n int, r Record) *Problem {
	p := &Problem{File: path, Line: n, Seq: r.Seq}
	if r.Kind == KindGap {
		switch {
		case n != 1:
			p.Kind, p.Detail = ProblemMalformed, fmt.Sprintf("record %d is a gap record on line %d, but a gap record opens its file", r.Seq, n)
			return p
		case r.ToSeq+1 != r.Seq || r.FromSeq > r.ToSeq:
			p.Kind, p.Detail = ProblemMalformed, fmt.Sprintf("gap record %d names records %d-%d, which do not end right before it", r.Seq, r.FromSeq, r.ToSeq)
			return p
		case v.res.Records > 0:
			return v.linkGap(path, r)
		case r.FromSeq == 1:
			return nil // the log's first file: every record before it is lost, and it says so
		}
		// The first record given: linked as any first record, below.
	}
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

// linkGap checks that gap record r, which opens path, follows the records
// accepted so far: every record before the range it names must be there,
// none after it, and when the last record of the range is there, r must
// follow it by hash. Records of the range that are missing are the gap.
func (v *verifier) linkGap(path string, r Record) *Problem {
	p := &Problem{File: path, Line: 1, Seq: r.Seq}
	last, prev := v.res.LastSeq, filepath.Base(v.file)
	first := cmp.Or(r.FromSeq, r.Seq) // the first record that may be missing
	switch {
	case last+1 < first:
		accounts := "for no lost record"
		if r.FromSeq > 0 {
			accounts = "only for " + rangeWords(r.FromSeq, r.ToSeq)
		}
		p.Kind = ProblemMissing
		p.Detail = fmt.Sprintf("%s missing: %s ends at record %d, and gap record %d, which opens this file, accounts %s",
			recordsAre(last+1, first-1), prev, last, r.Seq, accounts)
	case last > r.ToSeq:
		p.Kind = ProblemReordered
		p.Detail = fmt.Sprintf("the files overlap: this file starts with gap record %d, which follows record %d, but %s holds records up to %d", r.Seq, r.ToSeq, prev, last)
	case last == r.ToSeq && r.Prev != v.res.LastHash:
		p.Kind = ProblemEdited
		p.Detail = fmt.Sprintf("gap record %d does not follow record %d, the last of %s: its prev is not that record's hash, so one of the two was edited and hashed again, or replaced", r.Seq, last, prev)
	default:
		v.noteGap(path, r)
		return nil
	}
	return p
}

// noteGap adds gap record r, which opens path, to the result, with what
// the files hold of the records it names.
func (v *verifier) noteGap(path string, r Record) {
	g := Gap{File: path, Seq: r.Seq, Time: r.Time, Cause: r.Cause, FromSeq: r.FromSeq, ToSeq: r.ToSeq, Foreign: v.before.foreign}
	last, prev := v.res.LastSeq, filepath.Base(v.file)
	var found string
	switch {
	case v.res.Records == 0 && r.FromSeq == 1:
		g.LostFrom, g.LostTo = 1, r.ToSeq
		found = fmt.Sprintf("%s lost: the log holds no record before this one", recordsAre(1, r.ToSeq))
	case v.res.Records == 0:
		found = "the records before it are not given, so what is left of those it names cannot be told"
	case last < r.ToSeq:
		g.LostFrom, g.LostTo = last+1, r.ToSeq
		found = fmt.Sprintf("%s lost: the log holds records up to %d, the last of %s", recordsAre(last+1, r.ToSeq), last, prev)
	case r.FromSeq > 0:
		found = fmt.Sprintf("none is lost: all of %s are in %s", rangeWords(r.FromSeq, r.ToSeq), prev)
	default:
		found = "no record is lost"
	}
	if d := v.before.damage; d != nil && g.LostFrom > 0 {
		found += fmt.Sprintf("; what %s holds after that is not a record as written (line %d: %s)", filepath.Base(d.File), d.Line, d.Detail)
	}
	if g.Foreign > 0 {
		found += fmt.Sprintf("; the %d bytes after the daemon's %d in %s are not its own, and were not read", g.Foreign, r.Size, prev)
	}
	g.Detail = fmt.Sprintf("gap record %d (%s, %s): %s; %s", r.Seq, cmp.Or(r.Cause, "no cause given"), r.Time.UTC().Format(time.RFC3339), r.Reason, found)
	v.res.Gaps = append(v.res.Gaps, g)
}

func (v *verifier) accept(path string, n int, r Record) {
	if v.res.Records == 0 && r.Kind == KindGap {
		v.noteGap(path, r)
	}
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

// logFile is a file of the log, in its place.
type logFile struct {
	path string
	// next is the gap record the file after this one opens with (nil for
	// none): it says how much of this file the Writer vouches for.
	next *Record
}

// orderFiles puts files in the order of their first records, leaving out
// empty ones. A file whose first line cannot be read is a problem now: it
// cannot be put in its place.
func orderFiles(files []string) ([]logFile, error) {
	type first struct {
		path string
		seq  uint64
		gap  *Record
	}
	var firsts []first
	for _, path := range files {
		seq, gap, err := firstSeq(path)
		var p *Problem
		if rf, ok := parseRotated(filepath.Dir(path), filepath.Base(path)); ok && errors.As(err, &p) {
			// A rotated file's name says where it goes: its problem is
			// found in its place (where a gap record may account for it).
			seq, err = rf.first, nil
		}
		if err != nil {
			return nil, err
		}
		if seq > 0 {
			firsts = append(firsts, first{path, seq, gap})
		}
	}
	slices.SortStableFunc(firsts, func(a, b first) int { return cmp.Compare(a.seq, b.seq) })
	ordered := make([]logFile, len(firsts))
	for i, f := range firsts {
		ordered[i].path = f.path
		if i > 0 {
			ordered[i-1].next = f.gap
		}
	}
	return ordered, nil
}

// firstSeq returns the seq of a file's first record, 0 for an empty file,
// and the record when it is a gap record whose line matches its hash.
// A record that does not match its hash still has its place by its seq:
// the problem is reported when the file is verified, in order.
func firstSeq(path string) (uint64, *Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the audit log: %w", err)
	}
	defer f.Close()
	line, complete, err := newLineReader(f).next()
	switch {
	case errors.Is(err, io.EOF):
		return 0, nil, nil
	case errors.Is(err, errLineTooLong):
		return 0, nil, &Problem{File: path, Line: 1, Kind: ProblemMalformed, Detail: "not an audit record: " + err.Error()}
	case err != nil:
		return 0, nil, fmt.Errorf("reading the audit log: %s: %w", path, err)
	case !complete:
		return 0, nil, truncated(path, 1, line, 0)
	}
	r, err := parseLine(line)
	var le *lineError
	switch {
	case err == nil && r.Kind == KindGap:
		return r.Seq, &r, nil
	case err == nil:
		return r.Seq, nil, nil
	case errors.As(err, &le) && le.kind == ProblemEdited && le.seq > 0:
		return le.seq, nil, nil
	}
	return 0, nil, lineProblem(path, 1, err, 0)
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
