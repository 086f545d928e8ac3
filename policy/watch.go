package policy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
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
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching the policy: %w", err)
	}
	defer w.Close()
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watching the policy's directory %s: %w", dir, err)
	}
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
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watching the policy: the watcher stopped")
			}
			if concerns(ev.Name, base) {
				timer.Reset(watchDebounce)
			}
		case err, ok := <-w.Errors:
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
