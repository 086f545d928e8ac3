package daemon_test

import (
	"testing"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }
