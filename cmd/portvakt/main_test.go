package main

import (
	"testing"

	"github.com/portvakt/portvakt/softhsm/softhsmtest"
)

// TestMain gives the `portvakt hsm` tests their PKCS#11 implementation
// (PORTVAKT_TEST_HSM).
func TestMain(m *testing.M) { softhsmtest.Main(m) }
