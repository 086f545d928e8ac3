package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdExample: the example configuration for the systemd unit
// decodes, and its paths are the unit's: the socket in RuntimeDirectory
// with the callers' group of sysusers.d, the PIN where LoadCredential
// puts it, the audit log under ReadWritePaths.
func TestSystemdExample(t *testing.T) {
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("..", "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	cfg, err := Parse("portvakt.yaml", []byte(read("portvakt.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	unit, sysusers := read("portvakt.service"), read("portvakt.sysusers")
	setting := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `=(.*)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatalf("the unit has no %s=", key)
		}
		return m[1]
	}
	u := cfg.Listen.Unix
	if dir := "/run/" + setting("RuntimeDirectory"); filepath.Dir(u.Path) != dir {
		t.Errorf("listen.unix.path %s is not in the unit's RuntimeDirectory %s", u.Path, dir)
	}
	if u.Mode != "0660" || !strings.Contains(setting("SupplementaryGroups"), u.Group) ||
		!regexp.MustCompile(`(?m)^g\s+`+regexp.QuoteMeta(u.Group)+`\s`).MatchString(sysusers) {
		t.Errorf("listen.unix %+v: want mode 0660 and a group sysusers.d makes and the daemon is a member of", *u)
	}
	cred := strings.SplitN(setting("LoadCredential"), ":", 2)[0]
	if want := "/run/credentials/portvakt.service/" + cred; cfg.HSMs[0].PIN.File != want {
		t.Errorf("hsm.pin.file %s, want %s (LoadCredential)", cfg.HSMs[0].PIN.File, want)
	}
	if rw := setting("ReadWritePaths"); !strings.HasPrefix(cfg.Audit.File, rw+"/") {
		t.Errorf("audit.file %s is not under the unit's ReadWritePaths %s", cfg.Audit.File, rw)
	}
	if exec := setting("ExecStart"); !strings.Contains(exec, "--config /etc/portvakt/portvakt.yaml") {
		t.Errorf("ExecStart=%s does not read /etc/portvakt/portvakt.yaml", exec)
	}
}
