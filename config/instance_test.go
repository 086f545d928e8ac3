package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditInstance: audit.instance defaults to the host name, names the
// file where it says {instance}, and is checked.
func TestAuditInstance(t *testing.T) {
	cfg, err := Load(writeConfig(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if cfg.Audit.Instance != host {
		t.Errorf("audit.instance = %q, want the host name %q", cfg.Audit.Instance, host)
	}
	path := writeConfig(t, strings.Replace(validConfig, "audit: {file: audit/audit.log}", "audit: {file: \"audit/audit-{instance}.log\", instance: pv-2.osl}", 1))
	cfg, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(path), "audit", "audit-pv-2.osl.log"); cfg.Audit.File != want || cfg.Audit.Instance != "pv-2.osl" {
		t.Errorf("audit = %+v, want file %s", cfg.Audit, want)
	}
	for _, bad := range []string{"a/b", "a b", strings.Repeat("x", 65)} {
		_, err := Load(writeConfig(t, strings.Replace(validConfig, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, instance: '"+bad+"'}", 1)))
		if err == nil || !strings.Contains(err.Error(), "audit.instance") {
			t.Errorf("instance %q: %v, want an audit.instance error", bad, err)
		}
	}
}
