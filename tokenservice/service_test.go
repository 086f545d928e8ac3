package tokenservice

import (
	"strings"
	"testing"

	"github.com/portvakt/portvakt/maskinporten"
)

// TestNewRefusesNoRecorder: a service without a recorder would issue
// tokens no audit knows of; it is refused rather than given a no-op.
func TestNewRefusesNoRecorder(t *testing.T) {
	_, err := New(Options{Environments: []*Environment{{Config: maskinporten.Environment{Name: "test"}}}})
	if err == nil || !strings.Contains(err.Error(), "no recorder") {
		t.Fatalf("New without a recorder: %v, want it refused", err)
	}
}
