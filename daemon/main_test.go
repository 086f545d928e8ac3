package daemon_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestMain runs the tests on a private SoftHSM2 directory, then fails the
// run if any goroutine is left: every daemon a test started has been shut
// down by then (Serve returned, or Close), so whatever still runs outlived
// it.
func TestMain(m *testing.M) { softhsmtest.Main(leakChecked{m}) }

// leakChecked runs the tests, then looks for goroutines left behind.
type leakChecked struct{ m *testing.M }

func (l leakChecked) Run() int {
	code := l.m.Run()
	// Checked after failed runs too: what leaks is worth knowing then.
	if err := goleak.Find(leakIgnores()...); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: goroutines left after the daemon's tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// leakIgnores are the goroutines that are provably not a daemon's, each
// with why.
func leakIgnores() []goleak.Option {
	return nil
}
