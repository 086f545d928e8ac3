// Package repocheck holds tests of the repository itself: every relative
// link in its Markdown names a file inside it that exists, so a reader of
// a clone never meets a link into a directory only the developers have;
// and `make lint`'s check refuses a tracked binary.
package repocheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// link is a Markdown inline link's target: [text](target).
var link = regexp.MustCompile(`\]\(([^)\s]+)\)`)

func TestRelativeLinksStayInside(t *testing.T) {
	root := repoRoot(t)
	files, err := exec.Command("git", "-C", root, "ls-files", "*.md").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	checked := 0
	for _, name := range strings.Fields(string(files)) {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				target, _, _ = strings.Cut(target, "#")
				path := filepath.Join(root, filepath.Dir(name), target)
				rel, err := filepath.Rel(root, path)
				if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
					t.Errorf("%s:%d: link %s leads outside the repository: copy what the reader needs into docs/ and link that", name, i+1, m[1])
					continue
				}
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s:%d: link %s names no file in the repository", name, i+1, m[1])
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found in any Markdown file: the pattern is broken")
	}
}

// repoRoot is the checkout's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	return strings.TrimSpace(string(out))
}
