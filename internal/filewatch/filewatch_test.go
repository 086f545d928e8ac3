package filewatch

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// running is a Watcher's Run in the background, counting its callbacks.
type running struct {
	calls atomic.Int64
	done  chan error
}

func start(t *testing.T, paths ...string) (*running, context.CancelFunc) {
	t.Helper()
	w, err := New(paths, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx, func() { r.calls.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r, cancel
}

// waitCall waits for a callback after the n-th. The timeout only bounds a
// failing test.
func (r *running) waitCall(t *testing.T, n int64, what string) int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.calls.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("no callback after %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r.calls.Load()
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestChanges: each way a watched file is changed, in either of two
// directories, ends in a callback.
func TestChanges(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	fileA, fileB := filepath.Join(a, "cert.pem"), filepath.Join(b, "ca.pem")
	write(t, fileA, "1")
	write(t, fileB, "1")
	// b is a Kubernetes volume: ca.pem → ..data/ca.pem → ..v1/ca.pem.
	if err := os.Remove(fileB); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(b, "..v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(b, "..v1", "ca.pem"), "1")
	if err := os.Symlink("..v1", filepath.Join(b, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "ca.pem"), fileB); err != nil {
		t.Fatal(err)
	}
	r, _ := start(t, fileA, fileB)

	n := int64(0)
	write(t, fileA, "2")
	n = r.waitCall(t, n, "a file rewritten in place")

	write(t, fileA+".tmp", "3")
	if err := os.Rename(fileA+".tmp", fileA); err != nil {
		t.Fatal(err)
	}
	n = r.waitCall(t, n, "a file replaced by rename")

	if err := os.Mkdir(filepath.Join(b, "..v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(b, "..v2", "ca.pem"), "2")
	if err := os.Symlink("..v2", filepath.Join(b, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(b, "..data_tmp"), filepath.Join(b, "..data")); err != nil {
		t.Fatal(err)
	}
	r.waitCall(t, n, "a ..data swap")
}

// TestConcerns: the watched names and Kubernetes' ..data entries beside
// them, nothing else.
func TestConcerns(t *testing.T) {
	dir := t.TempDir()
	w, err := New([]string{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for name, want := range map[string]bool{
		"tls.crt": true, "tls.key": true, "..data": true, "..2026_12_01_15_00_00.123": true,
		".tls.crt.swp": false, "ca.crt": false,
	} {
		if got := w.concerns(filepath.Join(dir, name)); got != want {
			t.Errorf("concerns(%s) = %v, want %v", name, got, want)
		}
	}
	if w.concerns(filepath.Join(t.TempDir(), "tls.crt")) {
		t.Error("a file of that name in another directory concerns the watch")
	}
}

// TestMissingDirectory: a watch that cannot be set up is an error naming
// the directory, at New.
func TestMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	_, err := New([]string{filepath.Join(dir, "cert.pem")}, Options{})
	var dirErr *DirError
	if !errors.As(err, &dirErr) || dirErr.Dir != dir || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("New on a missing directory: %v, want a DirError for %s", err, dir)
	}
}

// TestRunEndsWithItsContext: Run returns nil when its context ends.
func TestRunEndsWithItsContext(t *testing.T) {
	w, err := New([]string{filepath.Join(t.TempDir(), "f")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx, func() {}); err != nil {
		t.Fatalf("Run after its context ended: %v", err)
	}
}
