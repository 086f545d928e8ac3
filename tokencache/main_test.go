package tokencache

import (
	"testing"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// simulator_test.go signs in SoftHSM2.
func TestMain(m *testing.M) { softhsmtest.Main(m) }
