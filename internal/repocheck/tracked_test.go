package repocheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrackedBinaryRefused runs scripts/check-tracked.sh (part of `make
// lint`) in a scratch repository: clean with text files only, failing and
// naming the file once a binary is added, as a `go build` in the root
// would leave one.
func TestTrackedBinaryRefused(t *testing.T) {
	root := repoRoot(t)
	script, err := os.ReadFile(filepath.Join(root, "scripts", "check-tracked.sh"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	write := func(name string, data []byte) {
		t.Helper()
		path := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q")
	write("scripts/check-tracked.sh", script)
	write("main.go", []byte("package main\n\nfunc main() {}\n"))
	git("add", ".")
	check := func() (string, error) {
		out, err := exec.Command("bash", filepath.Join(repo, "scripts", "check-tracked.sh")).CombinedOutput()
		return string(out), err
	}
	if out, err := check(); err != nil {
		t.Fatalf("a repository of text files is refused: %v\n%s", err, out)
	}

	write("portvakt", []byte("\x7fELF\x02\x01\x01\x00\x00\x00binary"))
	git("add", "portvakt")
	out, err := check()
	if err == nil {
		t.Fatalf("a tracked binary passed the check:\n%s", out)
	}
	if !strings.Contains(out, "tracked binary file: portvakt") {
		t.Errorf("the message does not name the binary:\n%s", out)
	}
}
