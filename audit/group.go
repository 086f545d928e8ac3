package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"
)

// Group commit: records appended at the same time share one write(2),
// and one fsync when any of them is synced.
//
// A caller encodes its record's fields (encodeFields) in its own goroutine
// and queues the record. When no group is being written, it leads one:
// it takes every record queued, chains them in queue order (each record's
// hash over the one before), writes their lines in one call, syncs the
// file when a record of the group asks for it, and gives every caller of
// the group its result. Records queued meanwhile wait, and when the group
// is done, the first of them leads the next. So a group is whatever came
// while the write before it was under way: a lone caller writes alone, at
// once, and waits for nothing; under load the writes, fsyncs and lock
// hand-offs are shared by as many records as came.
//
// Every caller still returns only once its record is written (and synced,
// if it asked): a reply still waits for its record. A write of a group
// that fails or falls short fails every record of the group, and the
// whole group is cut off again, as a single record's was (see flush).

// pending is one record in the queue, and what became of it.
type pending struct {
	rec    Record
	fields *[]byte // rec's fields, from encodeFields, in a buffer of fieldsPool
	encErr error   // from encodeFields
	sync   bool
	keep   bool          // Append: the record is wanted back as written; Put: only whether it was
	wake   chan struct{} // the leader's word: the result is in, or lead
	lead   bool          // woken to lead the next group, rather than with a result

	// Set by the leader, under Writer.mu, before it wakes the caller.
	out Record
	err error
	// The record's line in the group's buffer, and its hash.
	off, end int
	hash     [sha256.Size]byte
}

var pendingPool = sync.Pool{New: func() any { return &pending{wake: make(chan struct{}, 1)} }}

// group is the leader's scratch: the lines of the records being written,
// kept in the Writer from one group to the next so that a group allocates
// nothing (but a buffer grown past maxGroupBytes is let go).
type group struct {
	buf     []byte     // their lines, not yet written
	members []*pending // their records, in the order of buf
	seq     uint64     // seq of the last of them, or of the last record written
	prev    []byte     // its hash, in hex
}

// maxGroupBytes bounds the buffer kept for the next group: a group of
// ordinary records is a few kilobytes, and a near-MaxLineBytes one must
// not stay pinned.
const maxGroupBytes = 256 << 10

// Put writes *r like Append (synced) or AppendUnsynced (not synced) and
// says only whether it was written: for a caller that does not want the
// record back, which spares copying its line and hash for it. *r is
// copied, and left as it was. (A pointer, for the request's goroutine: a
// record is half a kilobyte, and copies of it down the call would grow
// the goroutine's stack.)
func (w *Writer) Put(r *Record, synced bool) error {
	return w.appendRecord(r, synced, nil)
}

// appendRecord queues *r, writes it (leading its group, or waiting for its
// leader), and stores the record as written in *out, unless out is nil.
func (w *Writer) appendRecord(r *Record, sync bool, out *Record) error {
	keep := out != nil
	p := pendingPool.Get().(*pending)
	p.rec, p.sync, p.keep = *r, sync, keep
	if keep {
		normalize(&p.rec) // the record handed back has its times in UTC
	}
	p.fields = getFieldsBuf()
	*p.fields, p.encErr = encodeFields((*p.fields)[:0], &p.rec)

	w.qmu.Lock()
	w.queue = append(w.queue, p)
	lead := !w.committing
	w.committing = true
	w.qmu.Unlock()
	if !lead {
		<-p.wake
		lead = p.lead
	} else {
		// A group of one, so far. Let the goroutines that are ready to
		// run on this thread run first: those that reach their record
		// meanwhile join the group. A write(2) costs more than the
		// record's encoding, and without this, under load on few cores,
		// nearly every record was a group of its own. With nothing else
		// to run, Gosched returns at once: a lone caller waits for
		// nothing, and there is no timer.
		runtime.Gosched()
	}
	if lead {
		w.commit(p)
	}
	err := p.err
	if keep && err == nil {
		*out = p.out
	}
	putFieldsBuf(p.fields)
	*p = pending{wake: p.wake}
	pendingPool.Put(p)
	return err
}

// commit writes the group of every record queued, self's among them,
// wakes their callers, and hands the lead to the first record queued
// meanwhile, if any.
func (w *Writer) commit(self *pending) {
	w.qmu.Lock()
	batch := w.queue
	w.queue = w.spare[:0]
	w.qmu.Unlock()

	w.mu.Lock()
	w.writeGroup(batch)
	notify := len(w.events) > 0
	w.mu.Unlock()
	if notify {
		w.notify() // before the callers return, as when each wrote its own
	}
	for _, p := range batch {
		if p != self {
			p.wake <- struct{}{} // after which p is its caller's again
		}
	}
	clear(batch)

	w.qmu.Lock()
	w.spare = batch[:0]
	if len(w.queue) > 0 {
		next := w.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	} else {
		w.committing = false
	}
	w.qmu.Unlock()
}

// writeGroup writes the records of batch, in order, and sets each one's
// result. Records that cannot be written (too long, say) are left out,
// and the chain goes on without them.
func (w *Writer) writeGroup(batch []*pending) {
	g := &w.group
	g.buf, g.members = g.buf[:0], g.members[:0]
	var now time.Time
	for _, p := range batch {
		now = w.now()
		if err := w.add(g, p, now); err != nil {
			p.err = err
		}
	}
	if len(g.members) > 0 {
		w.flush(g, len(g.buf), now)
	}
	for _, p := range batch {
		if p.err != nil {
			w.stats.Failures++
		} else {
			w.stats.Records++
		}
	}
	clear(g.members)
	g.members = g.members[:0]
	if cap(g.buf) > maxGroupBytes {
		g.buf = nil
	}
}

// add puts p's line at the end of the group, after what Append checks
// before each write: that the Writer takes records and its file is still
// its own. A rotation the line needs is made here, after the lines before
// it are written.
func (w *Writer) add(g *group, p *pending, now time.Time) error {
	r := &p.rec
	switch {
	case w.closed:
		return ErrClosed
	case r.Kind == "":
		return errors.New("writing an audit record: the record has no kind")
	case p.encErr != nil:
		return p.encErr
	}
	if len(g.members) == 0 { // as before each write
		if err := w.ready(now); err != nil {
			return err
		}
		g.seq, g.prev = w.seq, append(g.prev[:0], w.hash...)
	}
	r.Seq = g.seq + 1
	if p.keep {
		r.Prev = string(g.prev)
	}
	if w.opts.Instance != "" {
		r.Instance = w.opts.Instance
	}
	if r.Time.IsZero() {
		r.Time = now
	}
	r.Time = r.Time.UTC()
	start := len(g.buf)
	var err error
	if g.buf, p.hash, err = appendLine(g.buf, r, *p.fields, g.prev); err != nil {
		return err
	}
	n := len(g.buf) - start
	if limit := w.maxRecordBytes(); n > limit {
		g.buf = g.buf[:start]
		return recordTooLong(r.Seq, n, limit)
	}
	pendingStart := r.Time
	if len(g.members) > 0 {
		pendingStart = g.members[0].rec.Time
	}
	if w.needsRotation(int64(start), n, now, pendingStart) {
		if len(g.members) > 0 && !w.flush(g, start, now) {
			g.buf = g.buf[:0]
			return w.unavailable()
		}
		// The line moves to the start of the buffer, for the new file.
		g.buf = g.buf[:copy(g.buf, g.buf[start:])]
		start = 0
		if err := w.rotate(now); err != nil {
			g.buf = g.buf[:0]
			if w.broken != nil {
				return w.unavailable()
			}
			return err
		}
	}
	p.off, p.end = start, start+n
	g.members = append(g.members, p)
	g.seq = r.Seq
	g.prev = hex.AppendEncode(g.prev[:0], p.hash[:])
	return nil
}

// recordTooLong is add's refusal of a line over the limit: a function of
// its own, so that its formatting takes no room in add's frame on the
// request's goroutine.
func recordTooLong(seq uint64, n, limit int) error {
	return fmt.Errorf("%w: record %d: its line of %d bytes is over the %d a record may have", ErrRecordTooLong, seq, n, limit)
}

// ready makes the Writer ready for a write, or says why it is not: a
// broken Writer tries to mend, a rotation that could not open the next
// file tries again, and the file is looked at (watch.go).
func (w *Writer) ready(now time.Time) error {
	if w.broken != nil {
		if err := w.mend(now, false); err != nil {
			return err
		}
	}
	if w.f == nil { // a rotation renamed the file but could not open the next
		if err := w.openActive(true); err != nil {
			return err
		}
	}
	return w.watchOrBreak(now)
}

// flush writes the first end bytes of the group's buffer, the lines of all
// its members, in one call, and syncs the file when one of them asks; it
// sets their results and empties the group. A failure breaks the Writer,
// fails every member, and cuts off what was written of them where it can,
// so that the file ends in a whole record, the last before the group: the
// gap record names every record of the group as possibly lost either way,
// but a verifier then reads every record before it. It reports whether
// the records were written.
func (w *Writer) flush(g *group, end int, now time.Time) bool {
	members := g.members
	defer func() {
		clear(g.members)
		g.members = g.members[:0]
	}()
	first, last := members[0], members[len(members)-1]
	which := func() string { return rangeWords(first.rec.Seq, last.rec.Seq) }
	fail := func() bool {
		err := w.unavailable() // which says what failed
		for _, p := range members {
			p.err = err
		}
		return false
	}
	n, err := w.f.Write(g.buf[:end])
	if err == nil && n != end {
		err = io.ErrShortWrite
	}
	if err != nil {
		sizeKnown := true
		if terr := w.f.Truncate(w.size); terr != nil {
			st, serr := w.f.Stat()
			if sizeKnown = serr == nil; sizeKnown {
				w.size = st.Size() // the part stays; it is not someone else's
			}
		}
		w.breakIO(CauseWrite, fmt.Errorf("writing %s failed: %w", which(), err), last.rec.Seq, hashString(last.hash), now)
		w.broken.sizeKnown = sizeKnown
		return fail()
	}
	w.size += int64(n)
	w.stats.Writes++
	w.seq, w.hash = last.rec.Seq, hashString(last.hash)
	if w.fileFirst == 0 {
		w.fileFirst, w.fileStart = first.rec.Seq, first.rec.Time
	}
	sync := false
	for _, p := range members {
		sync = sync || p.sync
	}
	if sync {
		if err := w.f.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the dirty
			// pages: the records since the last good fsync may be gone from
			// the disk although they still read back, and a later fsync of
			// this file that "succeeds" proves nothing. So no later record
			// goes into it. Every record of the group fails, those not
			// asking for the fsync too: fail closed.
			w.syncFailed = true
			w.breakIO(CauseFsync, fmt.Errorf("fsync after %s failed: %w", which(), err), w.seq, w.hash, now)
			return fail()
		}
		w.synced = w.seq
	}
	for _, p := range members {
		if p.keep {
			p.out = p.rec
			p.out.Hash = w.hash
			if p != last {
				p.out.Hash = hashString(p.hash)
			}
			p.out.line = bytes.Clone(g.buf[p.off:p.end])
		}
	}
	return true
}

// hashString is a hash in lowercase hex, with one allocation (where
// hex.EncodeToString makes two).
func hashString(sum [sha256.Size]byte) string {
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}
