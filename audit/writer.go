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

	"github.com/portvakt/portvakt/internal/backoff"
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
	// MaxRecordBytes refuses (ErrRecordTooLong) a record whose line, its
	// newline included, would be longer; 0 or more than MaxLineBytes is
	// MaxLineBytes. The line is encoded once, to be written: bounding it
	// here costs nothing more.
	MaxRecordBytes int
	// Instance, when set, is written into every record (Record.Instance):
	// the replica whose chain this is. Check it with ValidInstance.
	Instance string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// AcceptVanished opens a log that was written before (its lock file
	// is there) although no record of it is left, starting again at
	// record 1: for an operator who has looked and accepted the loss.
	// Without it Open refuses such a log (see resume.go).
	AcceptVanished bool
	// OnChange is told when the Writer stops taking records, when it
	// writes a gap record, and when it takes records again: at once, in
	// the order of the changes, outside the Writer's lock (so it may call
	// Stats), but by the caller writing a group before the group's other
	// callers return, so it must not append a record itself: that record
	// would wait for the group to end. The daemon turns it into a log line,
	// metrics and health.
	OnChange func(Event)

	// openFile opens the active file for appending; nil opens it on disk.
	// Tests replace it to make writes and fsyncs fail.
	openFile func(path string) (file, error)
	// retry spaces the attempts to open a new file after a failed write
	// or fsync; nil is defaultRetry. Tests make it short.
	retry *backoff.Policy
}

// defaultRetry spaces the attempts to open a new file after a disk
// failure: the first no sooner than a second after it, since a disk that
// has just failed a write rarely takes the next one, and then less and
// less often, up to about half a minute apart, so that a dead disk is not
// asked for a new file on every request.
var defaultRetry = backoff.Policy{Initial: time.Second, Max: 30 * time.Second}

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

// ErrRecordTooLong is wrapped by the error of Append for a record whose
// line is over Options.MaxRecordBytes; the log is left as it was.
var ErrRecordTooLong = errors.New("the audit record is too long")

// maxRecordBytes is the longest line Append writes.
func (w *Writer) maxRecordBytes() int {
	if n := w.opts.MaxRecordBytes; n > 0 && n < MaxLineBytes {
		return n
	}
	return MaxLineBytes
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("the audit log is closed")

// ErrCannotContinue is wrapped by the error of Open when the log's last
// record cannot be read and checked: a chain that cannot be continued is
// not appended to.
var ErrCannotContinue = errors.New("the audit chain cannot be continued")

// ErrUnavailable is wrapped by the error of every Append while the Writer
// is broken (see WriterStats.Broken): the record is not written, and the
// caller must refuse what it was for.
var ErrUnavailable = errors.New("the audit log is unavailable")

// Writer appends records to the audit log. It is safe for concurrent use.
// Records appended at the same time are written together, in the order of
// their seq, with one write call and at most one fsync (group commit, see
// group.go): a lone record is written at once, and under load the rate of
// appends is no longer bound by the disk's fsyncs, nor by a write call
// each.
//
// Before each write the Writer checks that its file is still the one at
// the path and as long as it wrote it (a stat of the path; see watch.go).
// When the file was deleted, replaced, truncated or appended to by someone
// else, or when a write or fsync fails, the Writer breaks: Append fails
// with ErrUnavailable, and the next record is a KindGap record at the
// start of a new file, saying which records may be lost and why. After a
// disk failure the Writer opens that file by itself, at the next Append or
// Check once its back-off allows, and then takes records again; after
// someone else's doing it writes the gap record at once, to keep the
// evidence, and takes no record until the daemon is restarted.
type Writer struct {
	opts     Options
	path     string
	dir      string
	now      func() time.Time
	openFile func(string) (file, error)
	retry    backoff.Policy
	onChange func(Event)
	lock     io.Closer // held while the Writer is open: one writer per log

	mu         sync.Mutex
	f          file        // nil after a rotation that could not open the new file
	fi         fs.FileInfo // f's identity, to tell it from another file at the path
	size       int64       // of the active file, as far as this Writer wrote it
	fileFirst  uint64      // seq of the active file's first record; 0 while it is empty
	fileStart  time.Time   // time of the active file's first record, for MaxAge
	fileGap    uint64      // FromSeq of the gap record the active file opens with, 0 for none
	seq        uint64      // of the last record written
	hash       string      // of the last record written
	synced     uint64      // seq of the last record known to be on disk
	syncFailed bool        // an fsync of f failed: what f holds after synced cannot be trusted, whatever a later fsync says
	broken     *breakage   // set while Append refuses records
	closed     bool
	stats      WriterStats
	events     []Event // changes not yet told to onChange

	notifyMu sync.Mutex // keeps onChange calls in the order of the changes

	// The queue of records for the next group (group.go).
	qmu        sync.Mutex
	queue      []*pending
	spare      []*pending // the slice of the group before, for the queue after
	committing bool       // a caller leads a group: the others wait to be woken
	group      group      // the leader's, under mu
}

// breakage is why the Writer takes no records, and what its gap record
// will say.
type breakage struct {
	cause string // one of the Cause constants
	err   error  // what happened, in a sentence
	final bool   // someone else's doing: no record until the daemon is restarted
	// The last record of the chain before the gap: the one whose write or
	// fsync failed, or the last one written. The gap record follows it.
	toSeq  uint64
	toHash string
	// Whether w.size can still be compared with the file's: not after a
	// failed write whose partial record could be neither cut off nor
	// measured, lest it be taken for someone else's bytes.
	sizeKnown bool
	gap       *Record // the gap record, once it is on disk

	failures  int       // attempts at the new file that failed, the failure itself included
	notBefore time.Time // no attempt before
	lastErr   error     // of the last attempt
}

// Event is a change in what a Writer can do, for logs, metrics and health.
type Event struct {
	// Broken: the Writer takes no record (true), or takes records again
	// after writing a gap record (false).
	Broken bool
	// Cause is why it broke, one of the Cause constants.
	Cause string
	// Err says why it broke; nil when it takes records again.
	Err error
	// Gap is the gap record written with this change, if any: the first
	// record of a new file.
	Gap *Record
	// Final: the Writer takes no record until the daemon is restarted.
	Final bool
}

// WriterStats count what a Writer did since it was opened, for metrics.
type WriterStats struct {
	Records   uint64 // records appended, the start and gap records included
	Writes    uint64 // write(2) calls that appended them: Records/Writes is group commit's sharing
	Failures  uint64 // appends that returned an error
	Rotations uint64
	Gaps      uint64 // gap records written
	LastSeq   uint64 // seq of the last record in the log
	LastHash  string // its hash: with LastSeq, an anchor to keep outside the log
	// Broken: every Append fails, until a new file is opened after a disk
	// failure, or until the daemon is restarted after someone else
	// changed the file (Final). Cause says why.
	Broken bool
	Final  bool
	Cause  string
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
// verifies, and appending to it would hide the damage. It refuses too a
// log that was opened before (its lock file is there) but of which no
// record is left. It first finishes the opening of a new file that a
// crash interrupted (see resume.go). The rest of the file is not read;
// that is Verify's work.
//
// Only one Writer, in any process, may have a log open: Open takes a lock
// on the file <Path>.lock beside it, which is left in place.
func Open(opts Options) (*Writer, error) {
	if opts.Path == "" {
		return nil, errors.New("opening the audit log: no path given")
	}
	if opts.Instance != "" {
		if err := ValidInstance(opts.Instance); err != nil {
			return nil, fmt.Errorf("opening the audit log %s: %w", opts.Path, err)
		}
	}
	if opts.MaxBytes < 0 || opts.MaxAge < 0 {
		return nil, fmt.Errorf("opening the audit log %s: rotation limits must not be negative", opts.Path)
	}
	w := &Writer{opts: opts, path: opts.Path, dir: filepath.Dir(opts.Path), now: opts.Now, openFile: opts.openFile, retry: defaultRetry, onChange: opts.OnChange}
	if w.now == nil {
		w.now = time.Now
	}
	if w.openFile == nil {
		w.openFile = openOSFile
	}
	if opts.retry != nil {
		w.retry = *opts.retry
	}
	if err := os.MkdirAll(w.dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	// The lock file is left in place: that it is there says the log was
	// written before, and so must have records.
	_, err := os.Lstat(lockPath(w.path))
	openedBefore := err == nil
	lock, err := lockLog(lockPath(w.path))
	if err != nil {
		return nil, fmt.Errorf("opening the audit log %s: %w", w.path, err)
	}
	w.lock = lock
	// On failure the lock file goes too if this Open made it and no record
	// was written: a daemon whose first start fails (a full disk, say)
	// has not made a log that the next start must find records in.
	fail := func(err error) (*Writer, error) {
		if !openedBefore && w.seq == 0 {
			_ = os.Remove(lockPath(w.path))
		}
		w.mu.Lock()
		w.close(false) // as it is: a start that fails must not leave a new file with a gap record each time
		w.mu.Unlock()
		return nil, err
	}
	if err := w.resume(openedBefore && !opts.AcceptVanished); err != nil {
		return fail(err)
	}
	// What an earlier run left is taken as it is: its Close synced it, or
	// its crash left what the disk has.
	w.synced = w.seq
	if err := w.openActive(false); err != nil {
		return fail(err)
	}
	if _, err := w.Append(Record{Kind: KindStart, Reason: "audit log opened for writing"}); err != nil {
		return fail(fmt.Errorf("opening the audit log: writing the start record: %w", err))
	}
	return w, nil
}

func lockPath(active string) string { return active + ".lock" }

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
	w.f, w.fi, w.size = f, st, st.Size()
	if w.size == 0 {
		w.fileFirst, w.fileStart, w.fileGap = 0, time.Time{}, 0
	}
	return nil
}

// Append writes r as the next record and returns it as written, with Seq,
// Prev and Hash set (and Time, when r had none). The record is written,
// with those appended at the same time, in one write call and, unless
// Options.NoSync, synced to disk before Append returns.
//
// When Append fails the caller must refuse whatever the record was for.
// A failed write or fsync breaks the Writer (see Writer) and fails every
// record of its group: what was written of them is cut off again where it
// can be, their seqs are used up, and the next record written is a gap
// record in a new file naming them, and every record since the last good
// fsync, as possibly lost.
func (w *Writer) Append(r Record) (Record, error) {
	var out Record
	if err := w.appendRecord(&r, !w.opts.NoSync, &out); err != nil {
		return Record{}, err
	}
	return out, nil
}

// AppendUnsynced writes r like Append but does not wait for the disk: the
// record is in the kernel when it returns, so it survives the daemon being
// killed, and it reaches the disk with the next synced record (an fsync
// flushes the whole file) or when the kernel writes it back. It is for
// records whose loss in a power cut is tolerable; a key use must go
// through Append.
func (w *Writer) AppendUnsynced(r Record) (Record, error) {
	var out Record
	if err := w.appendRecord(&r, false, &out); err != nil {
		return Record{}, err
	}
	return out, nil
}

// breakIO breaks the Writer after a failed write or fsync. The chain's
// last record is then toSeq (the failed one): the gap record follows it.
func (w *Writer) breakIO(cause string, err error, toSeq uint64, toHash string, now time.Time) {
	b := &breakage{cause: cause, err: err, toSeq: toSeq, toHash: toHash, sizeKnown: true, failures: 1}
	b.notBefore = now.Add(w.retry.Initial + w.retry.Delay(1))
	w.broken = b
	w.events = append(w.events, Event{Broken: true, Cause: cause, Err: err})
}

// mend tries to end the broken state: after a disk failure by opening a
// new file with a gap record, once the back-off allows (at once when
// force); after someone else's doing by writing the gap record, if that
// failed before. It returns nil when the Writer takes records again, and
// else the error for Append.
func (w *Writer) mend(now time.Time, force bool) error {
	b := w.broken
	if b.gap != nil || (!force && now.Before(b.notBefore)) {
		return w.unavailable()
	}
	if err := w.openSegment(now); err != nil {
		b = w.broken // openSegment may have found someone else's doing
		b.failures++
		b.lastErr = err
		b.notBefore = now.Add(w.retry.Initial + w.retry.Delay(b.failures))
		return w.unavailable()
	}
	if w.broken != nil {
		return w.unavailable()
	}
	return nil
}

// unavailable is Append's error while the Writer is broken.
func (w *Writer) unavailable() error {
	b := w.broken
	var then string
	switch {
	case b.final && b.gap != nil:
		then = fmt.Sprintf("gap record %d at the start of %s keeps what happened; no record is written until the daemon is restarted", b.gap.Seq, w.path)
	case b.final:
		then = fmt.Sprintf("no record is written until the daemon is restarted (the gap record saying so could not be written yet: %v)", b.lastErr)
	case b.lastErr != nil:
		then = fmt.Sprintf("no record is written until a new file is opened (the last attempt failed: %v)", b.lastErr)
	default:
		then = "no record is written until a new file is opened"
	}
	return fmt.Errorf("%w: %w; %s", ErrUnavailable, b.err, then)
}

// Check looks at the active file as Append does before each record, and
// breaks the Writer when the file is no longer the one it wrote; while the
// Writer is broken it makes the attempt at a new file that Append would.
// The daemon calls it on a timer, so that a deleted log or a disk that
// works again shows in its health without waiting for a request. It
// returns why the Writer takes no records, or nil.
func (w *Writer) Check() error {
	w.mu.Lock()
	err := w.check()
	notify := len(w.events) > 0
	w.mu.Unlock()
	if notify {
		w.notify()
	}
	return err
}

func (w *Writer) check() error {
	if w.closed {
		return ErrClosed
	}
	now := w.now()
	if w.broken != nil {
		return w.mend(now, false)
	}
	if w.f == nil {
		return w.openActive(true)
	}
	return w.watchOrBreak(now)
}

// watchOrBreak breaks the Writer when watch finds its file changed by
// someone else, or cannot tell.
func (w *Writer) watchOrBreak(now time.Time) error {
	t, err := w.watch(true)
	switch {
	case err != nil:
		w.breakIO(CauseWrite, fmt.Errorf("the active file could not be looked at before record %d: %w", w.seq+1, err), w.seq, w.hash, now)
	case t != nil:
		w.breakBy(t, now)
	default:
		return nil
	}
	return w.unavailable()
}

// notify tells onChange of the changes queued so far. Changes are queued
// under mu and told under notifyMu, so that two goroutines that each
// queued one tell them in their order.
func (w *Writer) notify() {
	if w.onChange == nil {
		w.mu.Lock()
		w.events = nil
		w.mu.Unlock()
		return
	}
	w.notifyMu.Lock()
	defer w.notifyMu.Unlock()
	w.mu.Lock()
	events := w.events
	w.events = nil
	w.mu.Unlock()
	for _, e := range events {
		w.onChange(e)
	}
}

// Stats returns what the Writer did since it was opened.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.LastSeq, s.LastHash = w.seq, w.hash
	if b := w.broken; b != nil {
		s.Broken, s.Final, s.Cause = true, b.final, b.cause
	}
	if w.f == nil && !w.closed {
		s.Broken = true // a rotation could not open the next file: every Append tries again
	}
	return s
}

// Close syncs and closes the log (even with NoSync: a clean stop loses
// nothing) and lets another Writer open it. It checks the file once more
// first, and when the Writer is broken and has not written its gap record
// yet, it tries to, so that the gap is on record before the log is left.
func (w *Writer) Close() error {
	w.mu.Lock()
	err := w.close(true)
	notify := len(w.events) > 0
	w.mu.Unlock()
	if notify {
		w.notify()
	}
	return err
}

func (w *Writer) close(mend bool) error {
	if w.closed {
		return nil
	}
	now := w.now()
	if mend && w.broken == nil && w.f != nil && w.watchOrBreak(now) == nil {
		if err := w.f.Sync(); err != nil {
			w.syncFailed = true
			w.breakIO(CauseFsync, fmt.Errorf("fsync at close failed: %w", err), w.seq, w.hash, now)
		}
	}
	if mend && w.broken != nil {
		_ = w.mend(now, true) // its outcome is in w.broken
	}
	w.closed = true
	var err error
	if w.broken != nil {
		err = w.unavailable()
	}
	if w.f != nil {
		// Synced above, or broken: closing cannot lose what is not lost.
		_ = w.f.Close()
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
