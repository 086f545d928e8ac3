package tokencache

import (
	"testing"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// simulator_test.go signs in SoftHSM2. softhsmtest.Main runs the tests and
// exits, so goleak cannot wrap it here: every test checks for leaked
// goroutines itself when its cache closes (closeAtEnd).
func TestMain(m *testing.M) { softhsmtest.Main(m) }
