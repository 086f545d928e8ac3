// Package filewatch tells when a set of files has changed and settled. It
// watches the files' directories, not the files: editors and Kubernetes
// replace a file by renaming another over it (a ConfigMap or Secret
// volume swaps a ..data symlink), which a watch on the file itself would
// not survive. A file that is a symlink into another directory is
// followed only through such ..data swaps.
package filewatch

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

// DefaultDebounce is how long the files must stay quiet before the
// callback runs: one save is often several events (truncate and write, or
// create, write and rename), and reading in between could catch half a
// file.
const DefaultDebounce = 100 * time.Millisecond

// ErrStopped is Run's error when the watch itself ended under it.
var ErrStopped = errors.New("the file watch stopped")

// DirError is a directory that could not be watched.
type DirError struct {
	Dir string
	Err error
}

func (e *DirError) Error() string { return "watching the directory " + e.Dir + ": " + e.Err.Error() }

func (e *DirError) Unwrap() error { return e.Err }

// Options tune a Watcher.
type Options struct {
	// Debounce is how long the files must stay quiet; default
	// DefaultDebounce.
	Debounce time.Duration
	// OnError is told of the watch's errors that do not end it; after an
	// overflow (events lost) a change is assumed as well. Default: ignored.
	OnError func(error)
}

// Watcher watches files; New sets it up, so that a watch that cannot start
// is an error at start, not a reload silently off. Run it or Close it.
type Watcher struct {
	w         *fsnotify.Watcher
	names     map[string]map[string]bool // directory → base names watched in it
	opts      Options
	closeOnce sync.Once
	closeErr  error
}

// New starts watching the directories of the paths.
func New(paths []string, opts Options) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.OnError == nil {
		opts.OnError = func(error) {}
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("starting a file watch: %w", err)
	}
	w := &Watcher{w: fw, names: map[string]map[string]bool{}, opts: opts}
	for _, p := range paths {
		dir, base := filepath.Dir(p), filepath.Base(p)
		if w.names[dir] == nil {
			if err := fw.Add(dir); err != nil {
				_ = fw.Close()
				return nil, &DirError{Dir: dir, Err: err}
			}
			w.names[dir] = map[string]bool{}
		}
		w.names[dir][base] = true
	}
	return w, nil
}

// Close stops the watch.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() { w.closeErr = w.w.Close() })
	return w.closeErr
}

// Run calls changed, in Run's goroutine, each time the files have changed
// and then stayed quiet for the debounce, until ctx ends (it then returns
// nil) or the watch itself fails (ErrStopped). It closes the Watcher.
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	defer w.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.w.Events:
			if !ok {
				return ErrStopped
			}
			if w.concerns(ev.Name) {
				timer.Reset(w.opts.Debounce)
			}
		case err, ok := <-w.w.Errors:
			if !ok {
				return ErrStopped
			}
			w.opts.OnError(err)
			// An overflow means events were lost, possibly the one that
			// mattered: look at the files to be sure.
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(w.opts.Debounce)
			}
		case <-timer.C:
			changed()
		}
	}
}

// concerns reports whether a change to name may have changed a watched
// file: the file itself, or Kubernetes' ..data symlink and ..timestamp
// directories beside it. Other files are ignored, or an editor's swap file
// would have the files read every few seconds.
func (w *Watcher) concerns(name string) bool {
	bases := w.names[filepath.Dir(name)]
	if bases == nil {
		return false
	}
	n := filepath.Base(name)
	return bases[n] || strings.HasPrefix(n, "..")
}
