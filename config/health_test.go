package config

import (
	"strings"
	"testing"
)

// TestHealthListener: listen.health takes a host:port of its own, and is
// not enough alone (it serves no token).
func TestHealthListener(t *testing.T) {
	withHealth := strings.Replace(validConfig, "  unix: {path: portvakt.sock}\n", "  unix: {path: portvakt.sock}\n  health: {address: \":8081\"}\n", 1)
	cfg, err := Load(writeConfig(t, withHealth))
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Listen.Health; h == nil || h.Address != ":8081" {
		t.Fatalf("listen.health = %+v", h)
	}
	loadFails(t, withHealth, [2]string{`health: {address: ":8081"}`, `health: {address: "8081"}`}, `listen.health.address "8081": not an address; use host:port`)
	loadFails(t, withHealth, [2]string{`health: {address: ":8081"}`, `health: {adress: ":8081"}`}, "listen.health.adress: unknown key; did you mean address?")

	// Health alone: no listener for callers.
	alone := "listen:\n  health: {address: \":8081\"}\n" + validConfig[strings.Index(validConfig, "hsm:"):]
	if _, err := Load(writeConfig(t, alone)); err == nil || !strings.Contains(err.Error(), "portvakt.yaml:1: listen: no listener; give a unix socket") {
		t.Fatalf("health alone: %v", err)
	}
}
