package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

// TestVersion: `portvakt version` and `portvakt --version` print the same
// three lines, the Go version among them.
func TestVersion(t *testing.T) {
	tr := &transcript{}
	out := tr.must(t, "version")
	want := regexp.MustCompile(`^version: \S+\nrevision: \S+\ngoversion: ` + regexp.QuoteMeta(runtime.Version()) + `\n$`)
	if !want.MatchString(out) {
		t.Fatalf("portvakt version printed:\n%q", out)
	}
	if flag := tr.must(t, "--version"); flag != out {
		t.Fatalf("portvakt --version printed\n%q\nportvakt version\n%q", flag, out)
	}
}

// TestVersionFromLdflags: the -X flags `make build` passes reach the
// binary under the names it uses.
func TestVersionFromLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "portvakt")
	const pkg = "github.com/portvakt/portvakt/internal/buildinfo"
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X "+pkg+".version=v9.8.7-3-gabcdef0-dirty -X "+pkg+".revision=abcdef0123-dirty", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		want := "version: v9.8.7-3-gabcdef0-dirty\nrevision: abcdef0123-dirty\ngoversion: " + runtime.Version() + "\n"
		if string(out) != want {
			t.Fatalf("portvakt %s printed\n%q, want\n%q", args[0], out, want)
		}
	}
}
