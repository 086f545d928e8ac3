package selfservice_test

import (
	"testing"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// The tests sign their grants in SoftHSM2.
func TestMain(m *testing.M) { softhsmtest.Main(m) }
