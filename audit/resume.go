package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// resume finds where the chain stands: the last record of the active file,
// or of the newest rotated file when the active file is empty or missing.
// This is all that Open decides about the log it finds at start:
//
//   - A new file whose opening a crash interrupted is put in place first
//     (finishSegment), so that its gap record is not lost.
//   - A log whose last record (or the active file's first) is cut short or
//     does not match its hash is refused: it cannot be continued so that
//     it verifies.
//   - A log that was opened before (openedBefore: its lock file was there)
//     but has no record left is refused: it was deleted or emptied while
//     the daemon was not watching it, and starting again at record 1 would
//     hide that.
//   - Anything else is continued, also a log whose last record is a gap
//     record: the gap is on record, and the restart was what it asked for.
func (w *Writer) resume(openedBefore bool) error {
	if err := w.finishSegment(); err != nil {
		return err
	}
	newest, err := newestRotated(w.path)
	if err != nil {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	st, err := os.Stat(w.path)
	switch {
	case err == nil && !st.Mode().IsRegular():
		return fmt.Errorf("opening the audit log %s: not a regular file", w.path)
	case err == nil && st.Size() > 0:
		last, err := lastRecord(w.path)
		if err != nil {
			return err
		}
		first, err := firstRecord(w.path)
		if err != nil {
			return err
		}
		if newest != nil && newest.last >= first.Seq {
			return fmt.Errorf("%w: %s starts at record %d, but the rotated file %s already holds records up to %d; run `portvakt audit verify %s`",
				ErrCannotContinue, w.path, first.Seq, filepath.Base(newest.path), newest.last, w.dir)
		}
		w.seq, w.hash = last.Seq, last.Hash
		w.fileFirst, w.fileStart = first.Seq, first.Time
		if first.Kind == KindGap {
			w.fileGap = first.FromSeq
		}
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("opening the audit log: %w", err)
	}
	if newest == nil && openedBefore {
		return fmt.Errorf("%w: the audit log %s was written before (%s is there), but no record of it is left: the file is missing or empty, and no rotated file is beside it. "+
			"It was deleted or emptied while the daemon was not running, or without its noticing; keep whatever is left of it for the investigation. "+
			"To start a new log from record 1, remove %s (or accept the gap: `portvakt serve --accept-audit-gap`)", ErrCannotContinue, w.path, lockPath(w.path), lockPath(w.path))
	}
	if newest == nil {
		return nil // a new log: record 1 comes next
	}
	last, err := lastRecord(newest.path)
	if err != nil {
		return err
	}
	if last.Seq != newest.last {
		return fmt.Errorf("%w: the rotated file %s ends at record %d, not at %d as its name says; run `portvakt audit verify %s`",
			ErrCannotContinue, newest.path, last.Seq, newest.last, w.dir)
	}
	w.seq, w.hash = last.Seq, last.Hash
	return nil
}

// lastRecord reads and checks the last line of a non-empty file, reading
// no more than one line's worth from its end.
func lastRecord(path string) (Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return Record{}, fmt.Errorf("opening the audit log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Record{}, fmt.Errorf("opening the audit log: %w", err)
	}
	size := st.Size()
	// One byte more than a line may have, for the newline before it.
	buf := make([]byte, min(size, MaxLineBytes+1))
	if _, err := f.ReadAt(buf, size-int64(len(buf))); err != nil {
		return Record{}, fmt.Errorf("opening the audit log: reading the end of %s: %w", path, err)
	}
	complete := len(buf) > 0 && buf[len(buf)-1] == '\n'
	body := buf
	if complete {
		body = buf[:len(buf)-1]
	}
	start := bytes.LastIndexByte(body, '\n') + 1
	if start == 0 && int64(len(buf)) < size {
		return Record{}, cannotContinue(f, path, complete, "the last line is longer than a record may be")
	}
	if !complete {
		return Record{}, cannotContinue(f, path, complete, "the last record is cut short (the file does not end in a newline): a write was interrupted, or the file was cut")
	}
	r, err := parseLine(body[start:])
	if err != nil {
		return Record{}, cannotContinue(f, path, complete, "the last record "+describe(err))
	}
	return r, nil
}

// firstRecord reads and checks the first line of a non-empty file, for
// the name and age of the file when it is rotated.
func firstRecord(path string) (Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return Record{}, fmt.Errorf("opening the audit log: %w", err)
	}
	defer f.Close()
	line, _, err := newLineReader(f).next()
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s:1: %v; run `portvakt audit verify %s`", ErrCannotContinue, path, err, filepath.Dir(path))
	}
	r, err := parseLine(line)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s:1: the first record %s; run `portvakt audit verify %s`", ErrCannotContinue, path, describe(err), filepath.Dir(path))
	}
	return r, nil
}

// describe words a line error after "the last record".
func describe(err error) string {
	var le *lineError
	if errors.As(err, &le) && le.kind == ProblemEdited {
		return "was edited: " + le.detail
	}
	return "is unreadable: " + err.Error()
}

// cannotContinue is Open's refusal, naming the line, which is counted only
// now: a healthy start reads one line, not the whole file.
func cannotContinue(f *os.File, path string, complete bool, what string) error {
	line := 0
	if _, err := f.Seek(0, io.SeekStart); err == nil {
		if n, err := countLines(f); err == nil {
			line = n
			if !complete {
				line++
			}
		}
	}
	loc := path
	if line > 0 {
		loc = fmt.Sprintf("%s:%d", path, line)
	}
	return fmt.Errorf("%w: %s: %s; run `portvakt audit verify %s` to check the whole log, and keep the damaged file for the investigation",
		ErrCannotContinue, loc, what, filepath.Dir(path))
}

func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 64<<10)
	n := 0
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// finishSegment completes the opening of a new active file that a crash
// interrupted (see openSegment). Its gap record is written and synced in
// .<active>.next before any name changes, so when that file holds a whole
// gap record, the opening was decided: the file at the path is moved to
// the name the record gives it, and the new file takes its place. A new
// file without a whole gap record never became part of the log, and is
// removed; the log is then as it was before the attempt.
func (w *Writer) finishSegment() error {
	tmp := nextPath(w.path)
	f, err := os.Open(tmp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	lr := newLineReader(f)
	line, complete, lerr := lr.next()
	g, perr := parseLine(line)
	_, _, rerr := lr.next() // one line, and nothing after it
	f.Close()
	if lerr != nil || !complete || !errors.Is(rerr, io.EOF) || perr != nil || g.Kind != KindGap || g.ToSeq+1 != g.Seq {
		if err := os.Remove(tmp); err != nil {
			return fmt.Errorf("opening the audit log: removing an unfinished new file: %w", err)
		}
		return nil
	}
	if _, err := os.Stat(w.path); err == nil {
		if g.File == "" {
			// The new file was to replace what is at the path without keeping
			// it: only ever a part of a record whose write failed.
			if whole, err := holdsLine(w.path); err != nil || whole {
				return fmt.Errorf("%w: %s holds gap record %d, which was to take the place of %s, but %s holds records; run `portvakt audit verify %s` and keep both files for the investigation",
					ErrCannotContinue, tmp, g.Seq, w.path, w.path, w.dir)
			}
		} else {
			to := filepath.Join(w.dir, g.File)
			if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s holds gap record %d, which was to take the place of %s after it was renamed to %s, but %s exists already; keep all three for the investigation",
					ErrCannotContinue, tmp, g.Seq, w.path, g.File, to)
			}
			if err := os.Rename(w.path, to); err != nil {
				return fmt.Errorf("opening the audit log: finishing the opening of a new file: %w", err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	if err := os.Rename(tmp, w.path); err != nil {
		return fmt.Errorf("opening the audit log: finishing the opening of a new file: %w", err)
	}
	return syncDir(w.dir)
}

// holdsLine reports whether a file holds a whole line.
func holdsLine(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, complete, err := newLineReader(f).next()
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	return complete || errors.Is(err, errLineTooLong), nil
}
