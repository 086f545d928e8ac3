package policy

import (
	"context"
	"errors"
	"fmt"

	"github.com/portvakt/portvakt/internal/filewatch"
)

// Watch reloads the policy whenever its file changes, until ctx ends (it
// then returns nil). It watches the file's directory, not the file (see
// internal/filewatch): a file replaced by rename and a ConfigMap volume's
// ..data swap are followed; a file that is a symlink into another
// directory is followed only through such swaps, elsewhere SIGHUP
// (Reload) remains the way. Watch reloads once as it starts, for changes
// made since NewStore. Failed reloads are logged and reported to the
// OnReload hooks; they do not stop the watch.
func (s *Store) Watch(ctx context.Context) error {
	w, err := s.NewWatcher()
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Watcher follows a Store's file; see Watch. NewWatcher sets it up, so
// that a watch that cannot start is an error at start, not a reload
// silently off.
type Watcher struct {
	s *Store
	w *filewatch.Watcher
}

// NewWatcher starts watching the policy file's directory. Run the Watcher
// or Close it.
func (s *Store) NewWatcher() (*Watcher, error) {
	w, err := filewatch.New([]string{s.path}, filewatch.Options{
		OnError: func(err error) { s.logger.Warn("watching the policy", "path", s.path, "err", err) },
	})
	var dirErr *filewatch.DirError
	switch {
	case errors.As(err, &dirErr):
		return nil, fmt.Errorf("watching the policy's directory %s: %w (SIGHUP still reloads it)", dirErr.Dir, dirErr.Err)
	case err != nil:
		return nil, fmt.Errorf("watching the policy: %w", err)
	}
	return &Watcher{s: s, w: w}, nil
}

// Close stops the watch.
func (w *Watcher) Close() error { return w.w.Close() }

// Run reloads the policy on every change until ctx ends (it then returns
// nil), or until the watch itself fails (an error: reloads on change are
// then off, SIGHUP still works). It closes the Watcher.
func (w *Watcher) Run(ctx context.Context) error {
	// The file may have changed between NewStore and now; unchanged, this
	// costs one read.
	_ = w.s.Reload()
	if err := w.w.Run(ctx, func() { _ = w.s.Reload() }); err != nil { // Reload logs and reports
		return fmt.Errorf("watching the policy: %w", err)
	}
	return nil
}
