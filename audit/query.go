package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// Filter selects records. Its zero value selects every record; each field
// that is set narrows the selection.
type Filter struct {
	Since       time.Time // records at or after this time
	Until       time.Time // records before this time
	Client      string    // the policy client, exactly
	Scope       string    // one of the record's scopes, exactly
	Environment string
	RequestID   string
	Kind        string // such as KindSignature
	GrantJTI    string // the grant signed, exactly: what Maskinporten's own logs name
}

// Match reports whether r is selected by f.
func (f Filter) Match(r Record) bool {
	return (f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until)) &&
		(f.Client == "" || r.Client == f.Client) &&
		(f.Scope == "" || slices.Contains(r.Scopes, f.Scope)) &&
		(f.Environment == "" || r.Environment == f.Environment) &&
		(f.RequestID == "" || r.RequestID == f.RequestID) &&
		(f.Kind == "" || r.Kind == f.Kind) &&
		(f.GrantJTI == "" || r.GrantJTI == f.GrantJTI)
}

// Query calls each for every record in the files (or a directory's log)
// that f selects, in the order of the log, reading one line at a time. An
// error from each stops Query, which returns it as it is.
//
// Query does not verify the log: it reads what the lines say, hashes
// unchecked, so that a damaged log can still be searched. Verify the log
// first to know that what Query finds is what was written
// (`portvakt audit query --verify` does). A line that is not a record at
// all stops Query with a *Problem.
func Query(paths []string, f Filter, each func(Record) error) error {
	files, err := Expand(paths...)
	if err != nil {
		return err
	}
	ordered, err := orderFiles(files)
	if err != nil {
		return err
	}
	for _, lf := range ordered {
		if err := queryFile(lf.path, lf.next, f, each); err != nil {
			return err
		}
	}
	return nil
}

// queryFile queries path, which comes before a file opening with
// gap record next (or nil): like Verify, it reads only the Writer's part of
// the file, and stops without a problem at damage the gap accounts for.
func queryFile(path string, next *Record, f Filter, each func(Record) error) error {
	seg := segmentOf(path, next)
	var last uint64
	err := scanLines(path, "reading the audit log", seg.limit, func() uint64 { return 0 }, func(n int, line []byte) error {
		r, err := parseLineUnchecked(line)
		if err != nil {
			return lineProblem(path, n, err, 0)
		}
		last = r.Seq
		if !f.Match(r) {
			return nil
		}
		r.line = append(make([]byte, 0, len(line)+1), line...)
		r.line = append(r.line, '\n')
		return each(r)
	})
	// Unchecked, like the rest of Query: damage before any record was read
	// is excused too (Verify, which checks, finds what the gap does not
	// account for).
	var p *Problem
	if errors.As(err, &p) && (seg.excuses(last+1) || last == 0 && seg.from > 0) {
		return nil
	}
	return err
}

// scanLines calls fn with each complete line of path and its number,
// reading at most limit bytes of it (all when limit < 0). A read error, an
// over-long line and a truncated last line end the scan; the last two as
// Problems about the record seq() says would be next.
func scanLines(path, doing string, limit int64, seq func() uint64, fn func(n int, line []byte) error) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	defer file.Close()
	var r io.Reader = file
	if limit >= 0 {
		r = io.LimitReader(file, limit)
	}
	lr := newLineReader(r)
	for {
		line, complete, err := lr.next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, errLineTooLong):
			return &Problem{File: path, Line: lr.line, Seq: seq(), Kind: ProblemMalformed, Detail: "not an audit record: " + err.Error()}
		case err != nil:
			return fmt.Errorf("%s: reading %s: %w", doing, path, err)
		case !complete:
			return truncated(path, lr.line, line, seq())
		}
		if err := fn(lr.line, line); err != nil {
			return err
		}
	}
}
