package maskinporten

import (
	"testing"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// The integration tests sign in SoftHSM2; see simulator_test.go.
func TestMain(m *testing.M) { softhsmtest.Main(m) }
