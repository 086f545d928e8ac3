package config

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var registeredKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// writePublicKey writes key's public half as a PEM block of kind beside the
// configuration at cfgPath.
func writePublicKey(t *testing.T, cfgPath, name, kind string, key *rsa.PublicKey) {
	t.Helper()
	var der []byte
	switch kind {
	case "PUBLIC KEY":
		var err error
		if der, err = x509.MarshalPKIXPublicKey(key); err != nil {
			t.Fatal(err)
		}
	case "RSA PUBLIC KEY":
		der = x509.MarshalPKCS1PublicKey(key)
	default:
		der = []byte("not a key")
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfgPath), name), pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kidConfig is validConfig with its test environment on a registered key.
func kidConfig(extra string) string {
	return strings.Replace(validConfig, "    key_label: eseal\n  - name: local", "    key_label: eseal\n    kid: portvakt-2026\n"+extra+"  - name: local", 1)
}

// TestRegisteredKeyConfig: kid alone needs no certificate; public_key_file
// (PKIX or PKCS #1 PEM) is read relative to the configuration.
func TestRegisteredKeyConfig(t *testing.T) {
	key, err := registeredKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"PUBLIC KEY", "RSA PUBLIC KEY"} {
		t.Run(kind, func(t *testing.T) {
			path := writeConfig(t, kidConfig("    public_key_file: registered.pem\n"))
			writePublicKey(t, path, "registered.pem", kind, &key.PublicKey)
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			e := cfg.Environments[0]
			if !e.RegisteredKeyOnly() || e.KeyIDHeader != "portvakt-2026" || e.PublicKeyFile != filepath.Join(filepath.Dir(path), "registered.pem") {
				t.Errorf("environment %+v: want a registered key only, public_key_file resolved", e)
			}
			pub, err := ReadPublicKey(e.PublicKeyFile)
			if err != nil || !pub.Equal(&key.PublicKey) {
				t.Errorf("ReadPublicKey = %v, %v", pub, err)
			}
		})
	}
	t.Run("kid alone", func(t *testing.T) {
		cfg, err := Load(writeConfig(t, kidConfig("")))
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.Environments[0].RegisteredKeyOnly() || cfg.Environments[1].RegisteredKeyOnly() {
			t.Error("RegisteredKeyOnly wrong")
		}
	})
	t.Run("kid with x5c", func(t *testing.T) {
		cfg, err := Load(writeConfig(t, kidConfig("    kid_with_x5c: true\n    certificate_file: server.pem\n")))
		if err != nil {
			t.Fatal(err)
		}
		if e := cfg.Environments[0]; e.RegisteredKeyOnly() || !e.KeyIDWithX5C {
			t.Errorf("environment %+v: want kid with x5c", e)
		}
	})
}

// TestRegisteredKeyConfigErrors: each mistake is named by its field.
func TestRegisteredKeyConfigErrors(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	key, err := registeredKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		body   string
		kind   string // written to registered.pem; "" for no file
		public *rsa.PublicKey
		want   string
	}{
		{"kid_with_x5c without kid", strings.Replace(validConfig, "    key_label: eseal\n  - name: local", "    key_label: eseal\n    kid_with_x5c: true\n  - name: local", 1), "", nil,
			"environments[0] (test).kid_with_x5c: it sends x5c beside a registered key's kid; give the kid too"},
		{"certificate_file with kid alone", kidConfig("    certificate_file: server.pem\n"), "", nil,
			"environments[0] (test).certificate_file: with kid the grant carries no certificate; set kid_with_x5c: true"},
		{"public_key_file without kid", strings.Replace(validConfig, "    key_label: eseal\n  - name: local", "    key_label: eseal\n    public_key_file: registered.pem\n  - name: local", 1), "PUBLIC KEY", &key.PublicKey,
			"environments[0] (test).public_key_file: it is the public key registered for a kid at Digdir; give the kid too"},
		{"public_key_file missing", kidConfig("    public_key_file: registered.pem\n"), "", nil,
			"environments[0] (test).public_key_file: open "},
		{"public_key_file not a public key", kidConfig("    public_key_file: registered.pem\n"), "CERTIFICATE", nil,
			"environments[0] (test).public_key_file: "},
		{"public_key_file too small", kidConfig("    public_key_file: registered.pem\n"), "PUBLIC KEY", &small.PublicKey,
			"holds a 1024-bit key; Digdir accepts registered keys of at least 2048 bits"},
		{"kid with spaces", strings.Replace(kidConfig(""), "kid: portvakt-2026", `kid: " portvakt-2026"`, 1), "", nil,
			`environments[0] (test).kid " portvakt-2026": remove the spaces`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.body)
			if tt.kind != "" {
				writePublicKey(t, path, "registered.pem", tt.kind, tt.public)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load() error = %v\nwant it to say %q", err, tt.want)
			}
			if tt.kind == "CERTIFICATE" && !strings.Contains(err.Error(), `holds a "CERTIFICATE" block; give the registered public key as PUBLIC KEY`) {
				t.Errorf("Load() error = %v, want it to say what the file holds", err)
			}
		})
	}
}

// TestRetiredPresetWarning: ver2 is still a preset, with a warning naming
// the environment and what to use instead; the others have none.
func TestRetiredPresetWarning(t *testing.T) {
	cfg, err := Load(writeConfig(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() = %q for the test preset, want none", w)
	}
	cfg, err = Load(writeConfig(t, strings.Replace(validConfig, "preset: test", "preset: ver2", 1)))
	if err != nil {
		t.Fatalf("ver2 is refused: %v", err)
	}
	w := cfg.Warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], "environments[0] (test).preset ver2: ") || !strings.Contains(w[0], "retired on 10 June 2024") || !strings.Contains(w[0], "use preset test") {
		t.Errorf("Warnings() = %q, want one for environments[0] saying ver2 was retired and to use test", w)
	}
	if env, err := cfg.Environments[0].Resolve(); err != nil || env.Issuer != "https://ver2.maskinporten.no/" {
		t.Errorf("ver2 resolved to %+v, %v", env, err)
	}
}
