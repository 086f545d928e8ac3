package config

import (
	"strings"
	"testing"
	"time"
)

// TestClockThreshold: maskinporten.clock_threshold defaults to 3 s, takes a
// duration, and refuses a negative one.
func TestClockThreshold(t *testing.T) {
	cfg, err := Load(writeConfig(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Maskinporten.ClockThreshold != 3*time.Second {
		t.Errorf("default clock_threshold = %v, want 3s", cfg.Maskinporten.ClockThreshold)
	}
	cfg, err = Load(writeConfig(t, validConfig+"maskinporten: {clock_threshold: 8s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Maskinporten.ClockThreshold != 8*time.Second {
		t.Errorf("clock_threshold = %v, want the 8s configured", cfg.Maskinporten.ClockThreshold)
	}
	_, err = Load(writeConfig(t, validConfig+"maskinporten: {clock_threshold: -1s}\n"))
	if err == nil || !strings.Contains(err.Error(), "portvakt.yaml:26: maskinporten.clock_threshold must not be negative") {
		t.Errorf("a negative clock_threshold: %v, want it refused by name", err)
	}
}
