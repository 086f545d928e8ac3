// Package testbinary builds the portvakt command for tests that run it as
// a process (the daemon's fault and check tests, the command's own): once
// per test binary, with the race detector, as `make test` builds the rest.
package testbinary

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Portvakt is the path of a portvakt binary built from this checkout.
func Portvakt(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portvakt-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "portvakt")
		// By import path, so that it builds from any package's directory.
		out, err := exec.Command("go", "build", "-race", "-o", binary, "github.com/portvakt/portvakt/cmd/portvakt").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building portvakt: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}
