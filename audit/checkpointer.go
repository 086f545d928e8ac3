package audit

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// CheckpointOptions configure a Checkpointer.
type CheckpointOptions struct {
	// Key is the audit key, in the HSM: an RSA crypto.Signer.
	Key crypto.Signer
	// EveryRecords seals after this many records. Default 10000.
	EveryRecords uint64
	// Every seals at least this often while records come. Default 10 s.
	Every time.Duration
	// Instance names this daemon run in its checkpoints. Default random.
	Instance string
	// Logger receives a line when sealing fails. Default slog.Default().
	Logger *slog.Logger
	// From is the first record this run vouches for. Default: the
	// Writer's last record when NewCheckpointer is called (its start
	// record, right after Open).
	From uint64
	// OnCheckpoint, when set, is called with each checkpoint record once
	// it is written: the daemon keeps it on the HSM as the log's head. An
	// error is logged; the next checkpoint tries again.
	OnCheckpoint func(Record) error
}

// Checkpointer appends checkpoint records (see Seal) to a Writer's log:
// every EveryRecords records or Every, whichever comes first, and when
// asked (at a clean shutdown). A checkpoint that cannot be made (the HSM
// away) is logged and tried again at the next occasion; the records wait,
// unsealed, and still verify as a chain.
type Checkpointer struct {
	w    *Writer
	opts CheckpointOptions
	from uint64 // the Writer's start record: the first this instance vouches for

	mu        sync.Mutex
	own       uint64 // seq of the last checkpoint record appended, 0 before the first
	sealedTo  uint64 // the head that checkpoint sealed
	lastTime  time.Time
	notBefore time.Time // after a failure: when to try again
}

// poll is how often Run looks at the log's length: cheap (a mutex and a
// few fields), and often enough that EveryRecords is kept closely.
const poll = 100 * time.Millisecond

// retryFailed bounds the wait before a failed checkpoint is tried again.
const retryFailed = 5 * time.Second

// NewCheckpointer seals w's records with opts.Key. Make it right after
// Open: the instance vouches for records from the Writer's start record on,
// never for records an earlier run left unsealed.
func NewCheckpointer(w *Writer, opts CheckpointOptions) (*Checkpointer, error) {
	if opts.Key == nil {
		return nil, errors.New("audit checkpoints: no audit key given")
	}
	if opts.EveryRecords == 0 {
		opts.EveryRecords = 10000
	}
	if opts.Every == 0 {
		opts.Every = 10 * time.Second
	}
	if opts.Instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.Instance = hex.EncodeToString(b[:])
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.From == 0 {
		opts.From = w.Stats().LastSeq
	}
	c := &Checkpointer{w: w, opts: opts, from: opts.From, sealedTo: opts.From - 1, lastTime: time.Now()}
	// A test seal, so that a key the HSM cannot use is found at start
	// rather than at the first checkpoint.
	probe := Seal{Instance: opts.Instance}
	if err := probe.sign(opts.Key, time.Now()); err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	return c, nil
}

// Instance is the name this daemon run signs its checkpoints with.
func (c *Checkpointer) Instance() string { return c.opts.Instance }

// Checkpoint seals the records written since the last checkpoint, if any.
func (c *Checkpointer) Checkpoint() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.w.Stats()
	if c.pending(st) == 0 {
		return nil // nothing since the last checkpoint but the checkpoint
	}
	now := c.w.now().UTC()
	seal := &Seal{Instance: c.opts.Instance, From: c.from, HeadSeq: st.LastSeq, HeadHash: st.LastHash}
	if err := seal.sign(c.opts.Key, now); err != nil {
		return err
	}
	r, err := c.w.Append(Record{Kind: KindCheckpoint, Time: now, Seal: seal})
	if err != nil {
		return fmt.Errorf("writing the audit checkpoint: %w", err)
	}
	c.own, c.sealedTo, c.lastTime = r.Seq, seal.HeadSeq, time.Now()
	if c.opts.OnCheckpoint != nil {
		if err := c.opts.OnCheckpoint(r); err != nil {
			c.opts.Logger.Warn("audit checkpoint written, but not kept as the head on the HSM; the next checkpoint tries again",
				"checkpoint", r.Seq, "error", err.Error())
		}
	}
	return nil
}

// pending counts the records no checkpoint of this run has sealed yet,
// leaving out the last checkpoint itself. Records may come between reading
// the head and appending its checkpoint: they are pending still.
func (c *Checkpointer) pending(st WriterStats) uint64 {
	n := st.LastSeq - c.sealedTo
	if c.own > c.sealedTo {
		n--
	}
	return n
}

// due reports whether enough records, or enough time, have passed.
func (c *Checkpointer) due() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	pending := c.pending(c.w.Stats())
	if time.Now().Before(c.notBefore) {
		return false
	}
	return pending >= c.opts.EveryRecords || (pending > 0 && time.Since(c.lastTime) >= c.opts.Every)
}

// Run seals as records come, until ctx ends. It does not seal at the end:
// the caller does, after the last request, before closing the Writer.
func (c *Checkpointer) Run(ctx context.Context) {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !c.due() {
			continue
		}
		if err := c.Checkpoint(); err != nil {
			c.opts.Logger.Warn("audit checkpoint failed; the records since the last one stay unsealed until the next", "error", err.Error())
			c.mu.Lock()
			// Not at every poll: the HSM may be away for a while.
			c.notBefore = time.Now().Add(min(c.opts.Every, retryFailed))
			c.mu.Unlock()
		}
	}
}
