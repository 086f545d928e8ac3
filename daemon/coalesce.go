package daemon

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/portvakt/portvakt/audit"
)

// coalesceWindow is how often a run of identical records is written: a
// caller repeating the same denied or rate-limited call as fast as it can
// makes one record a second, whatever its rate.
const coalesceWindow = time.Second

// maxRuns bounds the runs a coalescer keeps, and so its memory, whatever
// the number of distinct callers and requests.
const maxRuns = 1024

// coalescer keeps runs of identical records (denials, rate-limited calls)
// from filling the log. The first record of a run is written at once, as
// any record, before the call is answered: a denial or a limit never goes
// unrecorded for longer than its call. Identical records after it, within
// the window, are only counted, and when the window ends their count is
// written as one record (audit.Record.Count) standing for all of them, and
// a new window begins; a window without any ends the run. So a run writes
// at most one record per window, and its counts add up to every call.
//
// Counted calls are answered before their count is written, and a crash
// loses at most one window of counts; they are refusals, and the first of
// each run is on record before its answer, so what the log shows is that,
// and by whom, calls were being refused, and how many were.
type coalescer struct {
	write   func(audit.Record) error // appends one record
	log     *slog.Logger
	window  time.Duration
	maxRuns int

	mu     sync.Mutex // held while writing, so a run's records keep their order
	runs   map[string]*run
	closed bool
}

// run is the records identical to the last one written, counted since.
type run struct {
	last  audit.Record // the latest counted, written with the count
	count uint64
	timer *time.Timer
}

func newCoalescer(write func(audit.Record) error, log *slog.Logger) *coalescer {
	return &coalescer{write: write, log: log, window: coalesceWindow, maxRuns: maxRuns, runs: map[string]*run{}}
}

// add writes rec, or counts it in the run of records identical to it but
// for their request id. When the coalescer already keeps maxRuns runs, a
// record of a new run is folded by fold into a record that stands for many
// (one that names fewer details) and counted in that one's run; with no
// fold it is written as it is, which its rate limit bounds. The error is
// that of writing rec; a record only counted has none.
func (c *coalescer) add(rec audit.Record, fold func(audit.Record) audit.Record) error {
	key := runKey(rec)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.write(rec) // the log is closing: it refuses, and says so
	}
	if r := c.runs[key]; r != nil {
		r.last, r.count = rec, r.count+1
		return nil
	}
	if len(c.runs) >= c.maxRuns {
		if fold == nil {
			return c.write(rec)
		}
		rec = fold(rec)
		key = runKey(rec)
		if r := c.runs[key]; r != nil {
			r.last, r.count = rec, r.count+1
			return nil
		}
		// A folded record starts a run of its own over the bound: fold
		// makes few enough kinds of them.
	}
	if err := c.write(rec); err != nil {
		return err
	}
	c.runs[key] = &run{timer: time.AfterFunc(c.window, func() { c.endWindow(key) })}
	return nil
}

// endWindow writes the count of a run's window and starts the next, or
// ends the run when nothing was counted.
func (c *coalescer) endWindow(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.runs[key]
	if r == nil || c.closed {
		return
	}
	if r.count == 0 {
		delete(c.runs, key)
		return
	}
	c.writeCount(r)
	r.timer.Reset(c.window)
}

// writeCount writes the record standing for a run's counted calls. A
// failure is logged: the calls were answered already.
func (c *coalescer) writeCount(r *run) {
	rec := r.last
	rec.Count = r.count
	r.count = 0
	if err := c.write(rec); err != nil {
		c.log.Error("audit record counting repeated calls could not be written",
			"kind", rec.Kind, "client", rec.Client, "identities", rec.Identities, "count", rec.Count, "last_request_id", rec.RequestID, "error", err.Error())
	}
}

// close writes every count not yet written, and from then on writes each
// record as it comes. It must be called before the log is closed.
func (c *coalescer) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for key, r := range c.runs {
		r.timer.Stop()
		if r.count > 0 {
			c.writeCount(r)
		}
		delete(c.runs, key)
	}
}

// runKey is what identical records share: everything but their request id
// and time.
func runKey(rec audit.Record) string {
	rec.RequestID, rec.Time = "", time.Time{}
	b, _ := json.Marshal(rec) // a Record has nothing that fails to marshal
	return string(b)
}
