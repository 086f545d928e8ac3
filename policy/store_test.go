package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/logbuffer"
)

// policyFor writes a policy in which uid:1000 (client billing) may have
// one scope in prod, plus the rest given.
func policyFor(scope string, extra string) string {
	return `clients:
  - name: billing
    identities: [uid:1000]
    rules:
      - environments: [prod]
        scopes: [` + scope + `]
    rate_limit: {per_second: 0.001, burst: 2}
` + extra
}

const (
	scopeA = "svv:kjoretoy/ecoc"
	scopeB = "svv:kjoretoy/leasingtaker"
)

func allows(p *Policy, scope string) bool {
	return p.Decide(Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{scope}}).Allowed
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes a temporary file and renames it over path, as editors
// and configuration management do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// events records what OnReload reports.
type events struct {
	mu   sync.Mutex
	list []ReloadEvent
}

func (e *events) add(ev ReloadEvent) { e.mu.Lock(); e.list = append(e.list, ev); e.mu.Unlock() }
func (e *events) last() ReloadEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.list[len(e.list)-1]
}

func newTestStore(t *testing.T, content string) (*Store, string, *logbuffer.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, content)
	log := &logbuffer.Buffer{}
	s, err := NewStore(path, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s, path, log
}

func TestNewStoreRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, "clients: []\n")
	if _, err := NewStore(path, nil); err == nil || !strings.Contains(err.Error(), path+":1: the policy has no clients") {
		t.Fatalf("NewStore(no clients) = %v", err)
	}
	if _, err := NewStore(path+".missing", nil); err == nil {
		t.Fatal("NewStore(missing file) succeeded")
	}
}

func TestReload(t *testing.T) {
	s, path, log := newTestStore(t, policyFor(scopeA, ""))
	var ev events
	s.OnReload(ev.add)
	if !allows(s.Current(), scopeA) || allows(s.Current(), scopeB) {
		t.Fatal("the first policy is not in force")
	}

	// A valid change applies.
	writeFile(t, path, policyFor(scopeB, ""))
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if allows(s.Current(), scopeA) || !allows(s.Current(), scopeB) {
		t.Fatal("the reloaded policy is not in force")
	}
	if e := ev.last(); !e.OK || e.Err != nil || e.At.IsZero() {
		t.Errorf("event after a good reload = %+v", e)
	}

	// A broken file leaves the policy in force and says why.
	before := s.Current()
	writeFile(t, path, policyFor("not-a-scope", ""))
	err := s.Reload()
	if err == nil || !strings.Contains(err.Error(), path+":6: scope \"not-a-scope\"") || !strings.Contains(err.Error(), "previous policy stays in force") {
		t.Fatalf("Reload(broken) = %v", err)
	}
	if s.Current() != before || !allows(s.Current(), scopeB) {
		t.Fatal("a broken file replaced the policy")
	}
	if e := ev.last(); e.OK || e.Err == nil {
		t.Errorf("event after a failed reload = %+v", e)
	}
	if len(Problems(err)) != 1 {
		t.Errorf("Problems(reload error) = %q, want the one problem", Problems(err))
	}
	if !strings.Contains(log.String(), "policy reload failed") {
		t.Errorf("the failure was not logged:\n%s", log)
	}

	// A file that went away: the same.
	os.Remove(path)
	if err := s.Reload(); err == nil || s.Current() != before {
		t.Fatalf("Reload(missing file) = %v", err)
	}

	// Unchanged content: nothing replaced.
	writeFile(t, path, policyFor(scopeB, ""))
	if err := s.Reload(); err != nil || s.Current() != before {
		t.Fatalf("Reload(unchanged) = %v, replaced: %v", err, s.Current() != before)
	}
}

// waitFor polls until the store's policy satisfies ok. The timeout only
// bounds a failing test; nothing is asserted about how fast it is.
func waitFor(t *testing.T, s *Store, what string, ok func(*Policy) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok(s.Current()) {
		if time.Now().After(deadline) {
			t.Fatalf("the watch did not pick up %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	s, path, _ := newTestStore(t, policyFor(scopeA, ""))
	var ev events
	s.OnReload(ev.add)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx) }()
	// Wait until the watch has started: it reloads once when it has.
	waitForEvent(t, &ev)

	writeFile(t, path, policyFor(scopeB, "")) // rewritten in place
	waitFor(t, s, "a file rewritten in place", func(p *Policy) bool { return allows(p, scopeB) })

	replaceFile(t, path, policyFor(scopeA, "")) // replaced by rename
	waitFor(t, s, "a file replaced by rename", func(p *Policy) bool { return allows(p, scopeA) })

	// A broken save is refused; the next good one is taken.
	replaceFile(t, path, "clients: [")
	waitForFailure(t, &ev)
	if !allows(s.Current(), scopeA) {
		t.Fatal("a broken save replaced the policy")
	}
	replaceFile(t, path, policyFor(scopeB, ""))
	waitFor(t, s, "a good save after a broken one", func(p *Policy) bool { return allows(p, scopeB) })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch returned %v after its context ended", err)
	}
}

// TestWatchConfigMap follows a Kubernetes ConfigMap volume: policy.yaml is
// a symlink to ..data/policy.yaml, and an update swaps the ..data symlink
// to a new directory, never touching policy.yaml itself.
func TestWatchConfigMap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "policy.yaml"), content)
	}
	version("..v1", policyFor(scopeA, ""))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	s.OnReload(ev.add)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx)
	waitForEvent(t, &ev)

	version("..v2", policyFor(scopeB, ""))
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "..v1"))
	waitFor(t, s, "a ConfigMap update", func(p *Policy) bool { return allows(p, scopeB) })
}

func waitForEvent(t *testing.T, ev *events) {
	t.Helper()
	waitUntil(t, "a reload event", func() bool { ev.mu.Lock(); defer ev.mu.Unlock(); return len(ev.list) > 0 })
}

func waitForFailure(t *testing.T, ev *events) {
	t.Helper()
	waitUntil(t, "a failed reload", func() bool { return !ev.last().OK })
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRequire(t *testing.T) {
	s, path, _ := newTestStore(t, policyFor(scopeA, ""))
	onlyProd := func(p *Policy) error {
		for _, e := range p.Environments() {
			if e != "prod" {
				return fmt.Errorf("environment %s is not served", e)
			}
		}
		return nil
	}
	if err := s.Require(onlyProd); err != nil {
		t.Fatalf("Require on a policy that passes: %v", err)
	}
	before := s.Current()
	writeFile(t, path, strings.Replace(policyFor(scopeB, ""), "[prod]", "[prod, staging]", 1))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "environment staging is not served") {
		t.Fatalf("Reload of a policy failing a check = %v", err)
	}
	if s.Current() != before {
		t.Fatal("a policy failing a check was put in force")
	}
	if err := s.Require(func(*Policy) error { return errors.New("no") }); err == nil {
		t.Fatal("Require did not check the policy in force")
	}
}

// TestWatcherThatCannotStartIsAnError: a watch that cannot be set up is
// reported when it is made, not dropped, so that hot reload is never
// silently off.
func TestWatcherThatCannotStartIsAnError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, policyFor(scopeA, ""))
	s, err := NewStore(path, slog.New(slog.NewTextHandler(&logbuffer.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil { // nothing left to watch
		t.Fatal(err)
	}
	w, err := s.NewWatcher()
	if err == nil {
		w.Close()
		t.Fatal("NewWatcher succeeded on a directory that is gone")
	}
	if !strings.Contains(err.Error(), "watching the policy's directory") || !strings.Contains(err.Error(), "SIGHUP") {
		t.Fatalf("NewWatcher: %v; want it to name the directory and the fallback", err)
	}
	if err := s.Watch(context.Background()); err == nil {
		t.Fatal("Watch returned nil for a watch that never started")
	}
}
