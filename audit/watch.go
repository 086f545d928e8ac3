package audit

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// tamper is what someone else did to the active file while the Writer had
// it open.
type tamper struct {
	cause string // CauseDeleted, CauseReplaced, CauseTruncated or CauseAppended
	err   error  // what happened, in a sentence
}

// watch reports what someone else did to the active file since the Writer
// last wrote it: whether the path still names the file the Writer has open
// and, when checkSize, whether that file is as long as the Writer made it.
// In the usual case that is one stat of the path, compared with what was
// known: cheap enough for every record. Writes of the same length in the
// middle of the file cannot be seen this way; Verify finds them.
//
// An error means the path could not be looked at, so whether the file is
// still there cannot be told.
func (w *Writer) watch(checkSize bool) (*tamper, error) {
	if size, same, ok := sameFile(w.path, w.fi); ok && same && (!checkSize || size == w.size) {
		return nil, nil // the usual case: no FileInfo allocated where the platform allows
	}
	return w.lookAgain(checkSize)
}

// lookAgain is watch's unusual case, a function of its own so that the
// usual one, once per write on a request's goroutine, has a small frame
// (a cached call's stack stays within 8 KiB).
func (w *Writer) lookAgain(checkSize bool) (*tamper, error) {
	st, err := os.Stat(w.path)
	if err == nil && os.SameFile(st, w.fi) {
		switch size := st.Size(); {
		case !checkSize || size == w.size:
			return nil, nil
		case size < w.size:
			return &tamper{CauseTruncated, fmt.Errorf("the active file %s was truncated while the daemon had it open: it holds %d of the %d bytes the daemon wrote (%s)",
				w.path, size, w.size, rangeWords(w.fileFirst, w.seq))}, nil
		default:
			return &tamper{CauseAppended, fmt.Errorf("%d bytes the daemon did not write were appended to the active file %s after record %d while the daemon had it open",
				size-w.size, w.path, w.seq)}, nil
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	fate := w.fate()
	if err != nil {
		return &tamper{CauseDeleted, fmt.Errorf("the active file %s (%s) was %s while the daemon had it open", w.path, w.holding(), fate)}, nil
	}
	return &tamper{CauseReplaced, fmt.Errorf("another file (%d bytes) took the place of the active file %s while the daemon had it open; the daemon's file (%s) was %s",
		st.Size(), w.path, w.holding(), fate)}, nil
}

// holding words what the Writer put in the active file.
func (w *Writer) holding() string {
	if w.fileFirst == 0 {
		return fmt.Sprintf("no record yet, %d bytes", w.size)
	}
	return fmt.Sprintf("%s, %d bytes", rangeWords(w.fileFirst, w.seq), w.size)
}

// fate says where the Writer's file went, once it is no longer at the
// path: the directory is searched for it (rare, so a directory read is
// affordable), and its link count tells deleted from moved away.
func (w *Writer) fate() string {
	ours, err := w.f.Stat()
	if err != nil {
		return "deleted or moved away"
	}
	if entries, err := os.ReadDir(w.dir); err == nil {
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && e.Name() != filepath.Base(w.path) && os.SameFile(fi, ours) {
				return "renamed to " + e.Name()
			}
		}
	}
	switch links, ok := linkCount(ours); {
	case ok && links == 0:
		return "deleted"
	case ok:
		return "moved out of its directory"
	}
	return "deleted or moved away"
}

func rangeWords(first, last uint64) string {
	if first == last {
		return fmt.Sprintf("record %d", first)
	}
	return fmt.Sprintf("records %d-%d", first, last)
}

// breakBy breaks the Writer for someone else's doing, for good: it takes
// no record until the daemon is restarted, for whoever can delete or
// rewrite its file may have done more. It writes the gap record at once:
// what it knows now, that a restart would not, must be on disk before the
// daemon can be stopped.
func (w *Writer) breakBy(t *tamper, now time.Time) {
	b := &breakage{cause: t.cause, err: t.err, final: true, toSeq: w.seq, toHash: w.hash, sizeKnown: true, failures: 1}
	w.broken = b
	if err := w.openSegment(now); err != nil { // else openSegment told of the change, gap record and all
		b.lastErr = err
		b.notBefore = now.Add(w.retry.Initial + w.retry.Delay(1))
		w.events = append(w.events, Event{Broken: true, Final: true, Cause: b.cause, Err: b.err})
	}
}

// openSegment puts a new active file in place whose first record is the
// gap record of w.broken, and moves aside what was at the path: the
// Writer's own file to a rotated name, so that Verify reads what is left
// of it in the chain, and a file that is not the Writer's to a name out of
// the log (<active>.<cause>.<time>), kept for the investigation. After a
// disk failure the Writer then takes records again.
//
// The gap record is written and synced in a file of its own first
// (.<active>.next, which no listing of the log includes), and only then
// are the names changed: an attempt that fails leaves the log as it was,
// however often it is tried on a failing disk, and a crash between the
// renames leaves pieces that Open puts together (see finishSegment).
func (w *Writer) openSegment(now time.Time) error {
	b := w.broken
	if !b.final && w.f != nil {
		t, err := w.watch(b.sizeKnown)
		if err != nil {
			return fmt.Errorf("looking at the audit log: %w", err)
		}
		if t != nil { // someone else's doing during the outage
			b.cause, b.final = t.cause, true
			b.err = fmt.Errorf("%w; before that, %w", t.err, b.err)
			w.events = append(w.events, Event{Broken: true, Final: true, Cause: t.cause, Err: b.err})
		}
	}
	// One more fsync, unless one of this file already failed: if it works,
	// every record written whole is on disk, and only the record whose
	// write failed is lost.
	if !w.syncFailed && w.f != nil && w.f.Sync() == nil {
		w.synced = w.seq
	}
	g := Record{Kind: KindGap, Time: now, Seq: b.toSeq + 1, Prev: b.toHash, ToSeq: b.toSeq, Cause: b.cause, Reason: b.err.Error()}
	if w.synced < b.toSeq {
		g.FromSeq = w.synced + 1
	}
	if b.final {
		g.Size = w.size
		// The file and its records are out of the Writer's hands: all of
		// them may be lost, or not be as written. Only when someone added to
		// the file are the Writer's own bytes still all there.
		if b.cause != CauseAppended && w.fileFirst > 0 && (g.FromSeq == 0 || w.fileFirst < g.FromSeq) {
			g.FromSeq = w.fileFirst
			// When the file opened with a gap record, that record may be
			// lost now too: its range is handed on, or Verify would find
			// those records missing unexplained.
			if w.fileGap > 0 && w.fileGap < g.FromSeq {
				g.FromSeq = w.fileGap
				g.Reason += fmt.Sprintf("; the file opened with gap record %d, which named records from %d on as possibly lost", w.fileFirst, w.fileGap)
			}
		}
	}

	var move string // the name for what is at the path now, "" to leave it to be replaced
	switch st, err := os.Stat(w.path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("looking at the audit log: %w", err)
	case w.fi != nil && os.SameFile(st, w.fi) && w.fileFirst > 0:
		move = filepath.Base(rotatedName(w.path, w.fileFirst, w.seq, now))
	case w.fi != nil && os.SameFile(st, w.fi) && b.cause != CauseAppended:
		// The Writer's file without a whole record in it: at most part of
		// the record whose write failed, which the gap record names.
	default:
		move = quarantineName(w.path, b.cause, now)
		g.Reason += "; the file found at the path is kept as " + move
	}
	g.File = move
	g.Instance = w.opts.Instance
	line, err := encodeLine(&g)
	if err != nil {
		return err
	}

	tmp := nextPath(w.path)
	_ = os.Remove(tmp) // left by a crash in an earlier attempt
	nf, err := w.openFile(tmp)
	if err != nil {
		return fmt.Errorf("opening a new audit file: %w", err)
	}
	abandon := func(err error) error {
		_ = nf.Close()
		_ = os.Remove(tmp)
		return err
	}
	if n, err := nf.Write(line); err != nil || n != len(line) {
		return abandon(fmt.Errorf("writing gap record %d to a new audit file: %w", g.Seq, cmp.Or(err, io.ErrShortWrite)))
	}
	if err := nf.Sync(); err != nil {
		return abandon(fmt.Errorf("writing gap record %d to a new audit file: fsync: %w", g.Seq, err))
	}
	nfi, err := nf.Stat()
	if err != nil {
		return abandon(fmt.Errorf("opening a new audit file: %w", err))
	}
	if move != "" {
		to := filepath.Join(w.dir, move)
		if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
			return abandon(fmt.Errorf("moving the audit file aside: %s exists already", to))
		}
		if err := os.Rename(w.path, to); err != nil {
			return abandon(fmt.Errorf("moving the audit file aside: %w", err))
		}
	}
	if err := os.Rename(tmp, w.path); err != nil {
		if move == "" || os.Rename(filepath.Join(w.dir, move), w.path) == nil {
			return abandon(fmt.Errorf("putting the new audit file in place: %w", err))
		}
		// Neither forward nor back: leave the pieces for Open to put
		// together, and stop until then.
		_ = nf.Close()
		b.final = true
		b.err = fmt.Errorf("%w; then the new audit file %s could not take the place of the old one, now %s (%v): restarting the daemon finishes the move", b.err, tmp, move, err)
		return fmt.Errorf("putting the new audit file in place: %w", err)
	}
	dirErr := syncDir(w.dir)

	if old := w.f; old != nil {
		_ = old.Close() // synced, or beyond saving: its error changes nothing
	}
	w.f, w.fi, w.size = nf, nfi, int64(len(line))
	w.fileFirst, w.fileStart, w.fileGap = g.Seq, g.Time, g.FromSeq
	w.seq, w.hash, w.synced, w.syncFailed = g.Seq, g.Hash, g.Seq, false
	w.stats.Records++
	w.stats.Writes++
	w.stats.Gaps++
	b.gap = &g
	if b.final {
		w.events = append(w.events, Event{Broken: true, Final: true, Cause: b.cause, Err: b.err, Gap: &g})
	} else {
		w.broken = nil
		w.events = append(w.events, Event{Cause: b.cause, Gap: &g})
		if dirErr != nil {
			// The new file's name may not survive a crash yet, although its
			// record would (Open finishes the move): a failure like an
			// fsync's, with nothing lost so far.
			w.breakIO(CauseFsync, fmt.Errorf("syncing the directory after opening a new file failed: %w", dirErr), g.Seq, g.Hash, now)
		}
	}
	return nil
}

// nextPath is where a new active file is made before it takes its place.
// The leading dot keeps it out of the log's files (see Files).
func nextPath(active string) string {
	return filepath.Join(filepath.Dir(active), "."+filepath.Base(active)+".next")
}

// quarantineName is a name, beside the active file and not taken yet,
// for a file found at the active path that is not the Writer's:
// audit.log.replaced.20261124T150405Z. It does not end in .log, so that no
// listing of the log takes it for part of it.
func quarantineName(active, cause string, t time.Time) string {
	base := fmt.Sprintf("%s.%s.%s", filepath.Base(active), cause, t.UTC().Format(rotatedTime))
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(filepath.Dir(active), name)); err != nil {
			return name // free, or not to be known: the rename will tell
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}
