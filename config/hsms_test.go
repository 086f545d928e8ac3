package config

import (
	"strings"
	"testing"
	"time"
)

// twoHSMs is validConfig with the keys of its two environments on two HSMs.
var twoHSMs = strings.NewReplacer(
	"hsm:\n  token: portvakt\n  pin: {file: user.pin}\n",
	"hsms:\n  - {name: prod-hsm, token: prod, pin: {file: user.pin}, probe_interval: 2s}\n  - {name: test-hsm, token: test, pin: {env: TEST_PIN}, max_sessions: 8}\n",
	"    client_id: 0b1c5c0f-test\n", "    client_id: 0b1c5c0f-test\n    hsm: test-hsm\n",
	"    client_id: local-client\n", "    client_id: local-client\n    hsm: prod-hsm\n",
).Replace(validConfig)

func TestSeveralHSMs(t *testing.T) {
	cfg, err := Load(writeConfig(t, twoHSMs))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.HSMs) != 2 {
		t.Fatalf("%d HSMs, want 2", len(cfg.HSMs))
	}
	test, local := cfg.HSMOf(cfg.Environments[0]), cfg.HSMOf(cfg.Environments[1])
	if test == nil || test.Token != "test" || test.MaxSessions != 8 || test.ProbeInterval != 5*time.Second || test.SessionWait != 5*time.Second {
		t.Errorf("environment test's HSM = %+v", test)
	}
	if local == nil || local.Token != "prod" || local.ProbeInterval != 2*time.Second || local.MaxSessions != 4 {
		t.Errorf("environment local's HSM = %+v", local)
	}
}

// TestOneHSMBlockStaysValid: today's single hsm block is the HSM named
// "default", and environments need not name it.
func TestOneHSMBlockStaysValid(t *testing.T) {
	cfg, err := Load(writeConfig(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range cfg.Environments {
		h := cfg.HSMOf(e)
		if h == nil || h.Name != DefaultHSM || h.Token != "portvakt" {
			t.Fatalf("environment %s: HSM %+v, want the single block as %q", e.Name, h, DefaultHSM)
		}
	}
}

func TestHSMErrorsSayWhatToFix(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string // in twoHSMs
		want    string
	}{
		{"both hsm and hsms", [2]string{"hsms:\n", "hsm: {token: x, pin: {env: P}}\nhsms:\n"}, "not both"},
		{"environment names no HSM", [2]string{"    hsm: test-hsm\n", ""}, `environments[0] (test).hsm: 2 HSMs are configured; say which holds this environment's key (prod-hsm, test-hsm)`},
		{"unknown HSM", [2]string{"hsm: test-hsm", "hsm: tset-hsm"}, `environments[0] (test).hsm "tset-hsm": no HSM has that name; use one of those configured: prod-hsm, test-hsm`},
		{"HSM without a name", [2]string{"name: test-hsm, ", ""}, `hsms[1].name "": use lower-case letters, digits and dashes`},
		{"two names for one token", [2]string{"token: test,", "token: prod,"}, `token "prod" of this module is already configured as HSM "prod-hsm"`},
		{"duplicate name", [2]string{"name: test-hsm", "name: prod-hsm"}, `"prod-hsm" is configured twice`},
		{"no token", [2]string{"token: test, ", ""}, "hsms[1] (test-hsm).token: missing; give the token label"},
		{"no pin", [2]string{", pin: {env: TEST_PIN}", ""}, "hsms[1] (test-hsm).pin: missing; give {file: PATH} or {env: VARIABLE}"},
		{"negative probe interval", [2]string{"probe_interval: 2s", "probe_interval: -2s"}, "hsms[0] (prod-hsm).probe_interval must be positive"},
		{"one session", [2]string{"max_sessions: 8", "max_sessions: 1"}, "hsms[1] (test-hsm).max_sessions must be at least 2"},
		{"unknown key", [2]string{"probe_interval: 2s", "probe_intervall: 2s"}, "hsms[0].probe_intervall: unknown key; did you mean probe_interval?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { loadFails(t, twoHSMs, tt.replace, tt.want) })
	}
}

func TestNoHSM(t *testing.T) {
	_, err := Load(writeConfig(t, strings.Replace(validConfig, "hsm:\n  token: portvakt\n  pin: {file: user.pin}\n", "", 1)))
	if err == nil || !strings.Contains(err.Error(), "hsm: missing; give the HSM holding the keys") {
		t.Fatalf("a configuration without an HSM: %v", err)
	}
}
