package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Options configure a Writer.
type Options struct {
	// Path is the active file, such as /var/log/portvakt/audit.log. Rotated
	// files are put beside it.
	Path string
	// NoSync skips the fsync after each record: appends are much faster,
	// and a crash of the machine (not only of the process) may lose the
	// last records, which were reported as written.
	NoSync bool
	// MaxBytes rotates the file before a record that would take it past
	// this size; 0 never rotates by size.
	MaxBytes int64
	// MaxAge rotates the file before a record when its first record is
	// this old; 0 never rotates by age.
	MaxAge time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	// openFile opens the active file for appending; nil opens it on disk.
	// Tests replace it to make writes and fsyncs fail.
	openFile func(path string) (file, error)
}

// file is what the Writer needs of the active file. It is an interface so
// that tests can make a write fall short or an fsync fail, which a real
// file does not do on demand (and chmod does not do at all for root).
type file interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Close() error
}

func openOSFile(path string) (file, error) {
	return os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("the audit log is closed")

// ErrCannotContinue is wrapped by the error of Open when the log's last
// record cannot be read and checked: a chain that cannot be continued is
// not appended to.
var ErrCannotContinue = errors.New("the audit chain cannot be continued")

// Writer appends records to the audit log. It is safe for concurrent use;
// records are written one at a time, write and fsync, so their order in
// the file is the order of their seq, and with fsync the rate of appends is
// that of the disk's fsyncs.
type Writer struct {
	opts     Options
	path     string
	dir      string
	now      func() time.Time
	openFile func(string) (file, error)
	lock     io.Closer // held while the Writer is open: one writer per log

	mu        sync.Mutex
	f         file      // nil after a rotation that could not open the new file
	size      int64     // of the active file, as far as this Writer wrote it
	fileFirst uint64    // seq of the active file's first record; 0 while it is empty
	fileStart time.Time // time of the active file's first record, for MaxAge
	seq       uint64    // of the last record written
	hash      string    // of the last record written
	broken    error     // set when the file holds a partial record that could not be removed
	closed    bool
	stats     WriterStats
}

// WriterStats count what a Writer did since it was opened, for metrics.
type WriterStats struct {
	Records   uint64 // records appended, the start record included
	Failures  uint64 // appends that returned an error
	Rotations uint64
	LastSeq   uint64 // seq of the last record in the log
	LastHash  string // its hash: with LastSeq, an anchor to keep outside the log
	Broken    bool   // every Append fails until the daemon is restarted
}

// Open opens the audit log for appending, creating the file (mode 0600) and
// its directory (0750) when missing, and appends a KindStart record, so
// that every restart of the daemon shows in the chain.
//
// The chain is continued from the last record of the file, or, when the
// file is empty or missing, from the last record of its newest rotated
// file (a rotation may have been cut short after the rename). Open refuses
// (with ErrCannotContinue) a log whose last or first record is cut short
// or does not match its hash: such a chain cannot be continued so that it
// verifies, and appending to it would hide the damage. The rest of the
// file is not read; that is Verify's work.
//
// Only one Writer, in any process, may have a log open: Open takes a lock
// on the file <Path>.lock beside it, which is left in place.
func Open(opts Options) (*Writer, error) {
	if opts.Path == "" {
		return nil, errors.New("opening the audit log: no path given")
	}
	if opts.MaxBytes < 0 || opts.MaxAge < 0 {
		return nil, fmt.Errorf("opening the audit log %s: rotation limits must not be negative", opts.Path)
	}
	w := &Writer{opts: opts, path: opts.Path, dir: filepath.Dir(opts.Path), now: opts.Now, openFile: opts.openFile}
	if w.now == nil {
		w.now = time.Now
	}
	if w.openFile == nil {
		w.openFile = openOSFile
	}
	if err := os.MkdirAll(w.dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	lock, err := lockLog(w.path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("opening the audit log %s: %w", w.path, err)
	}
	w.lock = lock
	if err := w.resume(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := w.openActive(false); err != nil {
		lock.Close()
		return nil, err
	}
	if _, err := w.Append(Record{Kind: KindStart, Reason: "audit log opened for writing"}); err != nil {
		w.Close()
		return nil, fmt.Errorf("opening the audit log: writing the start record: %w", err)
	}
	return w, nil
}

// openActive opens the active file for appending. After a rotation the
// file is new, and must be empty: anything else wrote there meanwhile.
func (w *Writer) openActive(mustBeEmpty bool) error {
	f, err := w.openFile(w.path)
	if err != nil {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil && mustBeEmpty && st.Size() != 0 {
		err = fmt.Errorf("it holds %d bytes that this writer did not write", st.Size())
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("opening the audit log %s: %w", w.path, err)
	}
	// A new file's name is only durable once its directory is synced.
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return fmt.Errorf("opening the audit log %s: %w", w.path, err)
	}
	w.f, w.size = f, st.Size()
	if w.size == 0 {
		w.fileFirst, w.fileStart = 0, time.Time{}
	}
	return nil
}

// Append writes r as the next record and returns it as written, with Seq,
// Prev and Hash set (and Time, when r had none). The record is written with
// one write call and, unless Options.NoSync, synced to disk before Append
// returns.
//
// When Append fails (disk full, file not writable, fsync failed) the log
// is as it was: a partly written record is cut off again, and the next
// Append writes the same seq. The caller must then refuse whatever the
// record was for. If a partial record cannot be cut off, the Writer stops:
// every later Append fails until the daemon is restarted and the log has
// been checked.
func (w *Writer) Append(r Record) (Record, error) {
	return w.appendRecord(r, !w.opts.NoSync)
}

// AppendUnsynced writes r like Append but does not wait for the disk: the
// record is in the kernel when it returns, so it survives the daemon being
// killed, and it reaches the disk with the next synced record (an fsync
// flushes the whole file) or when the kernel writes it back. It is for
// records whose loss in a power cut is tolerable; a key use must go
// through Append.
func (w *Writer) AppendUnsynced(r Record) (Record, error) {
	return w.appendRecord(r, false)
}

func (w *Writer) appendRecord(r Record, sync bool) (Record, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, err := w.append(r, sync)
	if err != nil {
		w.stats.Failures++
		return Record{}, err
	}
	w.stats.Records++
	return r, nil
}

func (w *Writer) append(r Record, sync bool) (Record, error) {
	switch {
	case w.closed:
		return Record{}, ErrClosed
	case w.broken != nil:
		return Record{}, w.broken
	case r.Kind == "":
		return Record{}, errors.New("writing an audit record: the record has no kind")
	}
	now := w.now()
	r.Seq, r.Prev = w.seq+1, w.hash
	if r.Time.IsZero() {
		r.Time = now
	}
	line, err := encodeLine(&r)
	if err != nil {
		return Record{}, err
	}
	if len(line) > MaxLineBytes {
		return Record{}, fmt.Errorf("writing audit record %d: its line of %d bytes is over the limit of %d", r.Seq, len(line), MaxLineBytes)
	}
	if w.f == nil { // a rotation renamed the file but could not open the next
		if err := w.openActive(true); err != nil {
			return Record{}, err
		}
	}
	if w.needsRotation(len(line), now) {
		if err := w.rotate(now); err != nil {
			return Record{}, err
		}
	}
	if err := w.write(line, sync); err != nil {
		return Record{}, fmt.Errorf("writing audit record %d to %s: %w", r.Seq, w.path, err)
	}
	if w.fileFirst == 0 {
		w.fileFirst, w.fileStart = r.Seq, r.Time
	}
	w.seq, w.hash = r.Seq, r.Hash
	return r, nil
}

// write appends line (and syncs it when sync), or leaves the file as it was.
func (w *Writer) write(line []byte, sync bool) error {
	n, err := w.f.Write(line)
	if err == nil && n != len(line) {
		err = io.ErrShortWrite
	}
	if err == nil && sync {
		err = w.f.Sync()
		if err != nil {
			err = fmt.Errorf("fsync: %w", err)
		}
	}
	if err == nil {
		w.size += int64(n)
		return nil
	}
	// The record was not (durably) written, and the caller will refuse
	// what it was for: take it out again, so that the file never holds a
	// record that was reported as failed, nor half a line that would make
	// the next record unreadable.
	if terr := w.f.Truncate(w.size); terr != nil {
		if st, serr := w.f.Stat(); serr == nil && st.Size() == w.size {
			return err // nothing had been written: nothing to take out
		}
		w.broken = fmt.Errorf("the audit log %s may end in a partial record that could not be removed (%v, after %v): "+
			"no record is written until the daemon is restarted; run `portvakt audit verify` on it first", w.path, terr, err)
		return fmt.Errorf("%w; %w", err, w.broken) // one line: operators read it in a log line
	}
	return err
}

// Stats returns what the Writer did since it was opened.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.LastSeq, s.LastHash, s.Broken = w.seq, w.hash, w.broken != nil
	return s
}

// Close syncs and closes the log (even with NoSync: a clean stop loses
// nothing) and lets another Writer open it.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	var err error
	if w.f != nil {
		if serr := w.f.Sync(); serr != nil {
			err = fmt.Errorf("fsync: %w", serr)
		}
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
		w.f = nil
	}
	if lerr := w.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("closing the audit log %s: %w", w.path, err)
	}
	return nil
}
