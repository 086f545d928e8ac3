package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/internal/duration"
	"github.com/portvakt/portvakt/secret"
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

// TestProductionExample: deploy/examples/production.yaml is valid, every
// check of Validate included (its files placed in a scratch root), and is
// the production setup it says: a network HSM's module with the PIN from a
// file, environments test and prod, mutual TLS, a health port, a sealed
// audit log and metrics.
func TestProductionExample(t *testing.T) {
	const name = "production.yaml"
	data, err := os.ReadFile(filepath.Join("..", "deploy", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.HSMs[0]
	if strings.Contains(h.Module, "softhsm") || h.SoftHSMDir != "" || h.PIN.File == "" || h.PIN.Env != "" {
		t.Errorf("hsm %+v: want a network HSM's module and the PIN from a file", h)
	}
	var envs []string
	for _, e := range cfg.Environments {
		envs = append(envs, e.Name+"="+e.Preset)
	}
	if got := strings.Join(envs, " "); got != "test=test prod=prod" {
		t.Errorf("environments %s, want test and prod", got)
	}
	if tcp := cfg.Listen.TCP; tcp == nil || tcp.Insecure || tcp.ClientCAFile == "" {
		t.Errorf("listen.tcp %+v: want mutual TLS", tcp)
	}
	if cfg.Listen.Health == nil || cfg.Audit.Seal == nil || cfg.Metrics.Address == "" {
		t.Errorf("want a health listener, a sealed audit and metrics: %+v", cfg)
	}
	if cfg.Audit.MaxAge != 7*24*time.Hour || cfg.Certificates.WarnBefore != 30*24*time.Hour {
		t.Errorf("audit.max_age %v, certificates.warn_before %v: want 7d and 30d", cfg.Audit.MaxAge, cfg.Certificates.WarnBefore)
	}

	// Validate stats the files the configuration names: make them under a
	// scratch root, as the deployment would have them.
	root := t.TempDir()
	place := func(p *string, mode os.FileMode) {
		*p = filepath.Join(root, *p)
		if err := os.MkdirAll(filepath.Dir(*p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*p, []byte("x\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	place(&cfg.Listen.TCP.CertFile, 0o644)
	place(&cfg.Listen.TCP.KeyFile, 0o600)
	place(&cfg.Listen.TCP.ClientCAFile, 0o644)
	place(&cfg.HSMs[0].Module, 0o644)
	place(&cfg.HSMs[0].PIN.File, 0o600)
	place(&cfg.Policy, 0o644)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example does not validate:\n%v", err)
	}
}

// TestReferenceHasEveryKey: docs/configuration.md describes every key the
// configuration has, and no key it does not.
func TestReferenceHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.\\[\\]]+)`(?: / `([a-z0-9_.\\[\\]]+)`)? \\|").FindAllStringSubmatch(string(data), -1) {
		for _, key := range m[1:] {
			if key != "" {
				documented[key] = true
			}
		}
	}
	known := map[string]bool{}
	for _, key := range keyPaths(reflect.TypeFor[Config](), "") {
		known[key] = true
		if !documented[key] {
			t.Errorf("docs/configuration.md has no row for %s", key)
		}
	}
	for key := range documented {
		if !known[key] {
			t.Errorf("docs/configuration.md describes %s, which the configuration does not have", key)
		}
	}
}

// keyPaths lists the dotted path of every key under t, with [] for the
// items of a list; a secret.Source is the mapping {file, env}.
func keyPaths(t reflect.Type, at string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			at += "[]"
		}
		t = t.Elem()
	}
	if t == reflect.TypeFor[secret.Source]() {
		return []string{at + ".file", at + ".env"}
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Duration]() {
		return nil
	}
	var paths []string
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" {
			continue
		}
		if at != "" {
			key = at + "." + key
		}
		paths = append(paths, key)
		paths = append(paths, keyPaths(f.Type, key)...)
	}
	return paths
}

// TestReferenceDefaults: where the configuration itself fills in a
// default, docs/configuration.md gives that default. (The cache's and the
// client's defaults are filled in by those packages and not seen here.)
func TestReferenceDefaults(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("minimal.yaml", []byte("listen: {unix: {path: p.sock}}\nhsm: {token: t, pin: {env: PIN}}\n"+
		"environments: [{name: test, preset: test, client_id: c, key_label: k}]\npolicy: p.yaml\naudit: {file: a.log, instance: i, seal: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9_.\\[\\]]+)`(?: / `[^`]+`)? \\| [^|]+ \\| `([^`]+)`")
	checked := 0
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		key, doc := m[1], strings.Trim(m[2], `"`)
		v, ok := valueAt(reflect.ValueOf(cfg).Elem(), strings.Split(strings.ReplaceAll(key, "[]", ""), "."))
		if !ok || v.IsZero() {
			continue // a default filled in elsewhere, or none
		}
		checked++
		got := fmt.Sprint(v.Interface())
		if d, ok := v.Interface().(time.Duration); ok {
			want, err := duration.Parse(doc)
			if err != nil || want != d {
				t.Errorf("%s: the default is %v, docs/configuration.md says %s", key, d, doc)
			}
			continue
		}
		if got != doc {
			t.Errorf("%s: the default is %s, docs/configuration.md says %s", key, got, doc)
		}
	}
	if checked < 10 {
		t.Errorf("only %d defaults checked: is the table's format still the one this test reads?", checked)
	}
}

// valueAt follows keys (yaml names) into v, taking the first item of a
// list.
func valueAt(v reflect.Value, keys []string) (reflect.Value, bool) {
	for _, key := range keys {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Slice {
			if v.Kind() == reflect.Pointer && v.IsNil() || v.Kind() == reflect.Slice && v.Len() == 0 {
				return v, false
			}
			if v.Kind() == reflect.Slice {
				v = v.Index(0)
			} else {
				v = v.Elem()
			}
		}
		if v.Kind() != reflect.Struct {
			return v, false
		}
		found := false
		for i := range v.NumField() {
			if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); name == key {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return v, false
		}
	}
	return v, true
}
