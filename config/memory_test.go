package config

import (
	"regexp"
	"testing"
)

// TestMemoryLimit: memory_limit takes its default when left out, is kept
// when given, and a value the collector could not live with is refused
// with its line.
func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		want        int64
	}{
		{"left out", "", DefaultMemoryLimit},
		{"zero", "memory_limit: 0\n", DefaultMemoryLimit},
		{"given", "memory_limit: 134217728\n", 128 << 20},
		{"the least", "memory_limit: 16777216\n", MinMemoryLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, validConfig+tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MemoryLimit != tc.want {
				t.Fatalf("memory_limit %d, want %d", cfg.MemoryLimit, tc.want)
			}
		})
	}
	for _, value := range []string{"-1", "1048576", "16777215"} {
		t.Run("refused "+value, func(t *testing.T) {
			_, err := Load(writeConfig(t, validConfig+"memory_limit: "+value+"\n"))
			if err == nil || !regexp.MustCompile(`portvakt\.yaml:\d+: memory_limit `+value+`: too small; give at least 16777216 bytes`).MatchString(err.Error()) {
				t.Fatalf("memory_limit %s: %v, want it refused with its line", value, err)
			}
		})
	}
}
