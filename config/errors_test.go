package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/internal/strictyaml"
)

// fakePIN is a recognisable secret: the cases put it where a PIN is
// written by mistake, and no message may carry it.
const fakePIN = "Fake-PIN-C0FFEE-4711"

// goTypeName matches what a reader of the configuration should never see:
// Go types and the YAML package's tags and verbs.
var goTypeName = regexp.MustCompile(`config\.|secret\.|\[\]\w|!!|\b(u?int(8|16|32|64)?|float(32|64)|struct|interface)\b|time\.|unmarshal|reflect`)

// brokenConfig is a configuration with a mistake, the line the message
// must name, and what it must say (the thing wrong and what to do).
type brokenConfig struct {
	name string
	body string // validConfig edited; "SECRET" stands for fakePIN
	line int
	want []string
}

// edit is validConfig with old replaced by new (once), or, for old "",
// with new appended.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if old == "" {
		return validConfig + new
	}
	if !strings.Contains(validConfig, old) {
		t.Fatalf("test is stale: %q not in validConfig", old)
	}
	return strings.Replace(validConfig, old, new, 1)
}

func brokenConfigs(t *testing.T) []brokenConfig {
	return []brokenConfig{
		// Keys.
		{"misspelt top-level key", edit(t, "policy: policy.yaml", "policyy: policy.yaml"), 23, []string{"policyy: unknown key; did you mean policy?", "the keys here are listen, hsm,"}},
		{"misspelt nested key", edit(t, "cache: {refresh_margin: 45s}", "cache: {refresh_margn: 45s}"), 25, []string{"cache.refresh_margn: unknown key; did you mean refresh_margin?", "the keys of cache are refresh_margin,"}},
		{"misspelt key in a list item", edit(t, "    preset: test", "    presett: test"), 14, []string{"environments[0].presett: unknown key; did you mean preset?"}},
		{"misspelt key, other case", edit(t, "  token: portvakt", "  Token: portvakt"), 10, []string{"hsm.Token: unknown key; did you mean token?"}},
		{"key in the wrong block", edit(t, "", "max_sessions: 8\n"), 26, []string{"max_sessions: unknown key; max_sessions goes in hsm or hsms[]: move it there"}},
		{"misspelt key of another block", edit(t, "", "keepalive_tme: 1m\n"), 26, []string{"did you mean keepalive_time, which goes in grpc?"}},
		{"key known nowhere", edit(t, "", "colour: blue\n"), 26, []string{"colour: unknown key; remove it or correct it (the keys here are"}},
		{"key given twice", edit(t, "", "policy: other.yaml\n"), 26, []string{"policy: given twice (first at line 23); give it once"}},
		{"secret under a misspelt key", edit(t, "  pin: {file: user.pin}", "  pin: {file: user.pin}\n  pinn: SECRET"), 12, []string{"hsm.pinn: unknown key; did you mean pin?"}},

		// Shapes.
		{"string for a list", "listen: {unix: {path: p.sock}}\nenvironments: test\n", 2, []string{"environments: expected a list of environments, such as - {name: test, preset: test, client_id: ID, key_label: LABEL}, got a string"}},
		{"mapping for a list", "hsms: {name: a}\n", 1, []string{"hsms: expected a list of HSMs, such as - {name: prod-hsm", "got a mapping"}},
		{"list for a mapping", edit(t, "cache: {refresh_margin: 45s}", "cache: [45s]"), 25, []string{"cache: expected a mapping with the keys refresh_margin, error_backoff, max_entries, breaker, got a list"}},
		{"string for a mapping", edit(t, "hsm:\n  token: portvakt\n  pin: {file: user.pin}\n", "hsm: softhsm\n"), 9, []string{"hsm: expected a mapping such as {module: PATH, token: LABEL, pin: {file: PATH}}, got a string"}},
		{"list for a string", edit(t, "  token: portvakt", "  token: [SECRET]"), 10, []string{"hsm.token: expected a single value, got a list"}},
		{"string for a bool", edit(t, "    client_ca_file: clients-ca.pem", "    client_ca_file: clients-ca.pem\n    insecure: maybe"), 9, []string{"listen.tcp.insecure: expected true or false, got a string"}},
		{"string for an int", edit(t, "  token: portvakt", "  token: portvakt\n  max_sessions: four"), 11, []string{"hsm.max_sessions: expected a whole number, got a string"}},
		{"decimal for an int", edit(t, "", "grpc: {max_connections: 1.5}\n"), 26, []string{"grpc.max_connections: expected a whole number, got a decimal number"}},
		{"number too large", edit(t, "", "grpc: {max_recv_bytes: 99999999999999999999}\n"), 26, []string{"grpc.max_recv_bytes: the number is too large; give a whole number"}},
		{"negative count", edit(t, "cache: {refresh_margin: 45s}", "cache: {refresh_margin: 45s, max_entries: -1}"), 25, []string{"cache.max_entries must not be negative; leave it out for the default"}},
		{"negative unsigned", edit(t, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, seal: {every_records: -1}}"), 24, []string{"audit.seal.every_records: must not be negative; give a whole number (0 or more)"}},
		{"not a mapping at all", "- listen\n- hsm\n", 1, []string{"the file: expected a mapping with the keys listen, hsm,", "got a list"}},
		{"space after a colon in a value", edit(t, "  token: portvakt", "  token: {a: b}"), 10, []string{"hsm.token: expected a single value, got a mapping", "quote the value if the colon belongs in it"}},

		// Durations.
		{"bad duration", edit(t, "refresh_margin: 45s", "refresh_margin: soon"), 25, []string{`cache.refresh_margin: "soon" is not a duration`, "such as 30s, 5m, 12h or 30d"}},
		{"duration without a unit", edit(t, "refresh_margin: 45s", "refresh_margin: 45"), 25, []string{"the number 45 has no unit; write a number and a unit"}},
		{"duration in words", edit(t, "refresh_margin: 45s", "refresh_margin: 45 sekunder"), 25, []string{`"45 sekunder" is not a duration`}},
		{"list for a duration", edit(t, "", "certificates: {warn_before: [30d]}\n"), 26, []string{"certificates.warn_before: expected a duration such as 30s, 5m, 12h or 30d, got a list"}},
		{"negative duration", edit(t, "refresh_margin: 45s", "refresh_margin: -45s"), 25, []string{"cache.refresh_margin must not be negative; leave it out for the default"}},
		{"negative where positive", edit(t, "", "certificates: {warn_before: -30d}\n"), 26, []string{"certificates.warn_before must be positive; leave it out for the default"}},
		{"keepalive too short", edit(t, "", "grpc: {keepalive_time: 100ms}\n"), 26, []string{"grpc.keepalive_time 100ms: too short; give at least 1s"}},
		{"duration too long", edit(t, "", "certificates: {warn_before: 300000d}\n"), 26, []string{"it is too long"}},

		// The file.
		{"two documents", edit(t, "", "---\nlisten: {}\n"), 26, []string{"a second YAML document: the file is one document, so remove the --- and merge them"}},
		{"tab indentation", edit(t, "  token: portvakt", "\ttoken: portvakt"), 10, []string{"not valid YAML", "YAML indents with spaces: replace the tabs"}},
		{"unclosed flow mapping", edit(t, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log"), 24, []string{"not valid YAML", "check the indentation, the colons and the quotes"}},
		{"unclosed quote on the PIN", edit(t, "pin: {file: user.pin}", `pin: "SECRET`), 11, []string{"not valid YAML"}},
		{"empty file", "", 1, []string{"the configuration is empty; give at least listen, hsm, environments, policy and audit"}},
		{"only comments", "# nothing yet\n", 1, []string{"the configuration is empty"}},

		// The PIN.
		{"PIN written in", edit(t, "pin: {file: user.pin}", "pin: SECRET"), 11, []string{"hsm.pin: give the PIN as {file: PATH} or {env: VARIABLE}; a PIN is never written in the configuration"}},
		{"PIN under an unknown key", edit(t, "pin: {file: user.pin}", "pin: {value: SECRET}"), 11, []string{"hsm.pin: unknown key: give the PIN as {file: PATH} or {env: VARIABLE}"}},
		{"PIN in a list", edit(t, "pin: {file: user.pin}", "pin: [SECRET]"), 11, []string{"give the PIN as {file: PATH} or {env: VARIABLE}"}},

		// Values (Validate).
		{"unknown preset", edit(t, "preset: test", "preset: staging"), 14, []string{`unknown Maskinporten environment "staging"`, "choose one of prod, test, ver2"}},
		{"missing client_id", edit(t, "    client_id: local-client\n", ""), 17, []string{"environments[1] (local).client_id: missing; give the Maskinporten integration's client id"}},
		{"bad key_id hex", edit(t, "key_label: eseal\n  - name: local", "key_id: xyz\n  - name: local"), 16, []string{`environments[0] (test).key_id "xyz" is not hex; give the CKA_ID as hex digits`}},
		{"successor from not RFC 3339", edit(t, "key_label: eseal\n  - name: local", "key_label: eseal\n    successor: {key_label: eseal-2027, from: 1 March}\n  - name: local"), 17, []string{`environments[0] (test).successor.from "1 March": give a time in RFC 3339`}},
		{"successor without a key or certificate", edit(t, "key_label: eseal\n  - name: local", "key_label: eseal\n    successor: {from: \"2027-03-01T06:00:00Z\"}\n  - name: local"), 17, []string{"environments[0] (test).successor: give key_label or key_id of the renewed certificate's key"}},
		{"bad self_service key_id", edit(t, "key_label: eseal\n  - name: local", "key_label: eseal\n    self_service: {key_id: zz}\n  - name: local"), 17, []string{`environments[0] (test).self_service.key_id "zz" is not hex`}},
		{"bad grant_alg", edit(t, "key_label: eseal\n  - name: local", "key_label: eseal\n    grant_alg: HS256\n  - name: local"), 17, []string{`grant_alg "HS256": unknown algorithm; use RS256, RS384 or RS512`}},
		{"bad unix mode", edit(t, "unix: {path: portvakt.sock}", "unix: {path: portvakt.sock, mode: rw-rw----}"), 3, []string{`listen.unix.mode "rw-rw----": not a permission; give one in octal, such as "0660"`}},
		{"world-writable socket", edit(t, "unix: {path: portvakt.sock}", `unix: {path: portvakt.sock, mode: "0666"}`), 3, []string{"lets every user of the machine connect; use 0660 and a group"}},
		{"bad tcp address", edit(t, "address: 0.0.0.0:8443", "address: 0.0.0.0"), 5, []string{`listen.tcp.address "0.0.0.0": not an address; use host:port`}},
		{"bad metrics address", edit(t, "", "metrics: {address: localhost}\n"), 26, []string{`metrics.address "localhost": not an address; use host:port`}},
		{"insecure tcp off loopback", edit(t, "    cert_file: server.pem", "    insecure: true"), 6, []string{`listen.tcp.insecure is allowed only on a loopback address, not "0.0.0.0:8443"; listen on 127.0.0.1`}},
		{"mTLS file missing", edit(t, "    client_ca_file: clients-ca.pem\n", ""), 4, []string{"listen.tcp.client_ca_file is required for mutual TLS; give the PEM file"}},
		{"policy file missing", edit(t, "policy: policy.yaml", "policy: nope.yaml"), 23, []string{"no such file or directory; give an existing file"}},
		{"log format", edit(t, "", "log: {format: xml}\n"), 26, []string{`log.format "xml": unknown format; use json or text`}},
		{"log level", edit(t, "", "log: {level: verbose}\n"), 26, []string{`log.level "verbose": unknown level; use debug, info, warn or error`}},
		{"log calls", edit(t, "", "log: {calls: loud}\n"), 26, []string{`log.calls "loud": unknown value; use errors, all or sample`}},
		{"log calls sample", edit(t, "", "log: {calls: sample, calls_sample: -1}\n"), 26, []string{`log.calls_sample -1: give a whole number of 1 or more`}},
		{"audit instance", edit(t, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, instance: a/b}"), 24, []string{"only letters, digits", "set audit.instance when it does not fit"}},
		{"audit seal every zero", edit(t, "audit: {file: audit/audit.log}", "audit: {file: audit/audit.log, seal: {every: -1s}}"), 24, []string{"audit.seal.every must be positive; leave it out for the default"}},
		{"no audit", edit(t, "audit: {file: audit/audit.log}\n", ""), 2, []string{"audit.file: missing; give the audit log's path"}},
		{"one session", edit(t, "  token: portvakt", "  token: portvakt\n  max_sessions: 1"), 11, []string{"hsm.max_sessions must be at least 2 (one session holds the login)"}},
		{"duplicate environment", edit(t, "name: local", "name: test"), 17, []string{`environments[1] (test).name: "test" is configured twice; give each its own name`}},
	}
}

// TestBrokenConfigurations: each mistake is reported at its line, in
// words (no Go type), with what to do, and never with the PIN.
func TestBrokenConfigurations(t *testing.T) {
	cases := brokenConfigs(t)
	if len(cases) < 30 {
		t.Fatalf("%d cases; the issue asks for at least 30", len(cases))
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.ReplaceAll(tt.body, "SECRET", fakePIN)
			_, err := Load(writeConfig(t, body))
			if err == nil {
				t.Fatalf("Load accepted:\n%s", body)
			}
			msg := err.Error()
			if strings.Contains(msg, fakePIN) || strings.Contains(msg, "C0FFEE") {
				t.Errorf("the error carries the PIN: %s", msg)
			}
			if m := goTypeName.FindString(msg); m != "" {
				t.Errorf("the error names Go's types (%q): %s", m, msg)
			}
			found := false
			for _, p := range strictyaml.Problems(err) {
				var problem *strictyaml.Problem
				if !errors.As(p, &problem) || problem.Line <= 0 || !strings.HasSuffix(problem.File, "portvakt.yaml") {
					t.Errorf("a problem without file:line: %v", p)
					continue
				}
				if problem.Line == tt.line && containsAll(p.Error(), tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem at line %d saying %q in:\n%s", tt.line, tt.want, msg)
			}
			if !strings.Contains(msg, fmt.Sprintf("portvakt.yaml:%d: ", tt.line)) {
				t.Errorf("want portvakt.yaml:%d: in %s", tt.line, msg)
			}
		})
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestEveryShapeProblemAtOnce: one run reports every mistake of the file's
// shape, in the order of the lines.
func TestEveryShapeProblemAtOnce(t *testing.T) {
	body := strings.NewReplacer(
		"  token: portvakt", "  tokn: portvakt",
		"    preset: test", "    preset: [test]",
		"refresh_margin: 45s", "refresh_margin: 45 s",
	).Replace(validConfig) + "log: {format: json, levle: info}\n"
	_, err := Parse("portvakt.yaml", []byte(body))
	var got []string
	for _, p := range strictyaml.Problems(err) {
		got = append(got, p.Error()[:strings.Index(p.Error(), ": ")+1])
	}
	want := []string{"portvakt.yaml:10:", "portvakt.yaml:14:", "portvakt.yaml:25:", "portvakt.yaml:26:"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("problems at %v, want %v:\n%v", got, want, err)
	}
}

// TestEveryValueProblemAtOnce: Validate, too, reports everything, each at
// the line of its field.
func TestEveryValueProblemAtOnce(t *testing.T) {
	body := strings.NewReplacer(
		"address: 0.0.0.0:8443", "address: 0.0.0.0",
		"    preset: test", "    preset: staging",
		"client_id: local-client", `client_id: ""`,
	).Replace(validConfig) + "log: {format: xml}\n"
	_, err := Load(writeConfig(t, body))
	for _, want := range []string{"portvakt.yaml:5: listen.tcp.address", "portvakt.yaml:14: environments[0] (test)", "portvakt.yaml:20: environments[1] (local).client_id", "portvakt.yaml:26: log.format"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
}

// TestDaysInDurations: every duration of the configuration takes days and
// weeks, as `portvakt audit query --since` does.
func TestDaysInDurations(t *testing.T) {
	body := strings.Replace(validConfig, "  pin: {file: user.pin}\n", "  pin: {file: user.pin}\n  session_wait: 1d\n  probe_interval: 1d12h\n", 1) +
		"certificates: {warn_before: 30d}\naudit: {file: a.log, max_age: 2w}\n"
	body = strings.Replace(body, "audit: {file: audit/audit.log}\n", "", 1)
	body = strings.Replace(body, "cache: {refresh_margin: 45s}", "cache: {refresh_margin: 1d, breaker: {max_cool_down: 0.5d}}\nmaskinporten: {retry_deadline: 1d}\ngrpc: {max_connection_idle: 7d}", 1)
	cfg, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	const day = 24 * 60 * 60 * 1e9
	for name, got := range map[string]float64{
		"certificates.warn_before":    float64(cfg.Certificates.WarnBefore) / day,
		"audit.max_age":               float64(cfg.Audit.MaxAge) / day,
		"hsm.session_wait":            float64(cfg.HSMs[0].SessionWait) / day,
		"hsm.probe_interval":          float64(cfg.HSMs[0].ProbeInterval) / day,
		"cache.refresh_margin":        float64(cfg.Cache.RefreshMargin) / day,
		"cache.breaker.max_cool_down": float64(cfg.Cache.Breaker.MaxCoolDown) / day,
		"maskinporten.retry_deadline": float64(cfg.Maskinporten.RetryDeadline) / day,
		"grpc.max_connection_idle":    float64(cfg.GRPC.MaxConnectionIdle) / day,
	} {
		want := map[string]float64{"certificates.warn_before": 30, "audit.max_age": 14, "hsm.probe_interval": 1.5, "cache.breaker.max_cool_down": 0.5, "grpc.max_connection_idle": 7}[name]
		if want == 0 {
			want = 1
		}
		if got != want {
			t.Errorf("%s = %v days, want %v", name, got, want)
		}
	}
}

// FuzzParse: whatever the file, Parse and Validate return, every problem
// names the file, and no message names a Go type or carries the PIN.
func FuzzParse(f *testing.F) {
	f.Add(validConfig)
	f.Add(twoHSMs)
	for _, tt := range brokenConfigs(&testing.T{}) {
		f.Add(tt.body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		body = strings.ReplaceAll(body, "SECRET", fakePIN)
		cfg, err := Parse("portvakt.yaml", []byte(body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil {
			return
		}
		for _, p := range strictyaml.Problems(err) {
			var problem *strictyaml.Problem
			if !errors.As(p, &problem) || problem.File != "portvakt.yaml" {
				t.Fatalf("not a problem of the file: %v", p)
			}
		}
		msg := err.Error()
		if m := goTypeName.FindString(msg); m != "" && !strings.Contains(body, m) {
			t.Fatalf("the error names Go's types (%q): %s", m, msg)
		}
	})
}

// FuzzPINNeverEchoed: whatever is written as the PIN, the error never
// carries it.
func FuzzPINNeverEchoed(f *testing.F) {
	for _, pin := range []string{fakePIN, `"` + fakePIN + `"`, "[" + fakePIN + "]", "{value: " + fakePIN + "}", "{file: " + fakePIN, "{env: " + fakePIN + ", env: x}", "!!binary " + fakePIN, "&a " + fakePIN, "{file: [" + fakePIN + "]}"} {
		f.Add(pin)
	}
	f.Fuzz(func(t *testing.T, pin string) {
		// Shorter values are found in any message by chance; the message
		// templates' own words are not the PIN.
		value := strings.Trim(pin, `"'{}[]:&*!| `)
		if len(value) < 8 || strings.ContainsAny(pin, "\n\r") || strings.Contains(pin, "PATH") || strings.Contains(pin, "VARIABLE") {
			t.Skip()
		}
		body := strings.Replace(validConfig, "pin: {file: user.pin}", "pin: "+pin, 1)
		cfg, err := Parse("portvakt.yaml", []byte(body))
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil && strings.Contains(err.Error(), value) {
			t.Fatalf("pin: %s: the error carries it: %v", pin, err)
		}
	})
}
