package policy

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Store holds the policy in force and replaces it when the file changes.
// Requests read it without locking; a reload replaces it only with a valid
// policy, so a broken edit never takes the daemon's authorisation away.
type Store struct {
	path   string
	logger *slog.Logger
	cur    atomic.Pointer[Policy]

	mu     sync.Mutex // serialises reloads
	data   []byte     // the file the policy in force was parsed from
	hooks  []func(ReloadEvent)
	checks []func(*Policy) error
}

// ReloadEvent reports one reload attempt, for metrics and alerts.
type ReloadEvent struct {
	// OK is true when the file's policy is in force afterwards: replaced,
	// or unchanged because the file was.
	OK bool
	// Err says why the file was refused; the previous policy stays.
	Err error
	At  time.Time
}

// NewStore loads the policy at path. It fails when the policy is invalid:
// the daemon must not start without one. A nil logger discards.
func NewStore(path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the policy: %w", err)
	}
	p, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, logger: logger, data: data}
	s.cur.Store(p)
	return s, nil
}

// Current returns the policy in force. It never blocks: a request keeps
// the policy it started with even if a reload happens meanwhile.
func (s *Store) Current() *Policy { return s.cur.Load() }

// Path is the policy file the store follows.
func (s *Store) Path() string { return s.path }

// OnReload registers fn to be called after every reload attempt, in the
// goroutine that reloaded and while no other reload can run: fn must be
// quick and must not call Reload.
func (s *Store) OnReload(fn func(ReloadEvent)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, fn)
}

// Require adds a check that every policy must pass to be put in force, for
// what only the daemon knows, such as the environments it serves. It
// checks the policy in force now and returns that error; later, Reload
// refuses a policy that fails it as it refuses an invalid file, so a typo
// cannot reach the daemon through a reload either.
func (s *Store) Require(check func(*Policy) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, check)
	return check(s.cur.Load())
}

// Reload reads the file again and puts its policy in force. When the file
// is unreadable or invalid the policy in force stays, and the error (also
// logged) says why. Clients whose rate_limit did not change keep their
// buckets.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path)
	if err == nil && bytes.Equal(data, s.data) {
		// Watchers see several events per save, and a SIGHUP may come
		// with no edit: nothing to replace, nothing worth an info log.
		s.logger.Debug("policy file unchanged", "path", s.path)
		s.emit(ReloadEvent{OK: true, At: time.Now()})
		return nil
	}
	var p *Policy
	if err != nil {
		err = fmt.Errorf("reading the policy: %w", err)
	} else if p, err = Parse(s.path, data); err == nil {
		for _, check := range s.checks {
			if err = check(p); err != nil {
				break
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("policy %s not reloaded, the previous policy stays in force: %w", s.path, err)
		s.logger.Error("policy reload failed", "path", s.path, "problems", len(Problems(err)), "err", err)
		s.emit(ReloadEvent{Err: err, At: time.Now()})
		return err
	}
	p.adoptLimiters(s.cur.Load())
	s.cur.Store(p)
	s.data = data
	s.logger.Info("policy reloaded", "path", s.path, "clients", len(p.clients), "rules", p.rules, "environments", p.environments)
	s.emit(ReloadEvent{OK: true, At: time.Now()})
	return nil
}

func (s *Store) emit(e ReloadEvent) {
	for _, fn := range s.hooks {
		fn(e)
	}
}
