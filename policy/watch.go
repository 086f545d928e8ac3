package policy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long the file must stay quiet before it is read:
// one save is often several events (truncate and write, or create, write
// and rename), and reading in between could catch half a file.
const watchDebounce = 100 * time.Millisecond

// Watch reloads the policy whenever its file changes, until ctx ends (it
// then returns nil). It watches the file's directory, not the file:
// editors and Kubernetes replace a file by renaming another over it (a
// ConfigMap volume swaps a ..data symlink), which a watch on the file
// itself would not survive. A file that is a symlink into another
// directory is followed only through such ..data swaps; elsewhere SIGHUP
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
	s         *Store
	w         *fsnotify.Watcher
	base      string
	closeOnce sync.Once
}

// NewWatcher starts watching the policy file's directory. Run the Watcher
// or Close it.
func (s *Store) NewWatcher() (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching the policy: %w", err)
	}
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watching the policy's directory %s: %w (SIGHUP still reloads it)", dir, err)
	}
	return &Watcher{s: s, w: w, base: base}, nil
}

// Close stops the watch.
func (w *Watcher) Close() error {
	var err error
	w.closeOnce.Do(func() { err = w.w.Close() })
	return err
}

// Run reloads the policy on every change until ctx ends (it then returns
// nil), or until the watch itself fails (an error: reloads on change are
// then off, SIGHUP still works). It closes the Watcher.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.Close()
	s := w.s
	// The file may have changed between NewStore and now; unchanged, this
	// costs one read.
	_ = s.Reload()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.w.Events:
			if !ok {
				return errors.New("watching the policy: the watcher stopped")
			}
			if concerns(ev.Name, w.base) {
				timer.Reset(watchDebounce)
			}
		case err, ok := <-w.w.Errors:
			if !ok {
				return errors.New("watching the policy: the watcher stopped")
			}
			// An overflow means events were lost, possibly the one that
			// mattered: read the file to be sure.
			s.logger.Warn("watching the policy", "path", s.path, "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(watchDebounce)
			}
		case <-timer.C:
			_ = s.Reload() // logged and reported by Reload
		}
	}
}

// concerns reports whether a change to name in the directory may have
// changed the policy file: the file itself, or Kubernetes' ..data symlink
// and ..timestamp directories. Other files are ignored, or an editor's swap
// file would have the policy read every few seconds.
func concerns(name, base string) bool {
	n := filepath.Base(name)
	return n == base || strings.HasPrefix(n, "..")
}
