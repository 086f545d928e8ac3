package mpsim

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portvakt/portvakt/devca"
)

// writeConfigDir copies testdata/example.yaml, with its PEM files, into a
// temporary directory, and returns the directory.
func writeConfigDir(t *testing.T) string {
	t.Helper()
	f := getFixture(t)
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&f.kidKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"config.yaml":              example,
		"ca/" + devca.RootCertFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.ca.Root.Raw}),
		"keys/my-key.pub.pem":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadConfigExample(t *testing.T) {
	f := getFixture(t)
	dir := writeConfigDir(t)
	cfg, err := LoadConfig(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Issuer != "http://127.0.0.1:8089/" || cfg.TokenLifetime != 120*time.Second || cfg.ClockSkew != 10*time.Second {
		t.Errorf("issuer %q lifetime %s skew %s", cfg.Issuer, cfg.TokenLifetime, cfg.ClockSkew)
	}
	if len(cfg.TrustRoots) != 1 || !cfg.TrustRoots[0].Equal(f.ca.Root) {
		t.Errorf("trust roots %v, want the fixture's root", cfg.TrustRoots)
	}
	if len(cfg.Clients) != 1 {
		t.Fatalf("clients %+v, want one", cfg.Clients)
	}
	c := cfg.Clients[0]
	if c.ID != clientID || c.OrgNumber != supplierOrg || !slices.Equal(c.Scopes, []string{scopeECOC, scopeDelegert}) {
		t.Errorf("client %+v", c)
	}
	if k, ok := c.Keys["my-key"].(*rsa.PublicKey); !ok || !k.Equal(&f.kidKey.PublicKey) {
		t.Errorf("client keys %v, want my-key", c.Keys)
	}
	want := []Delegation{{ConsumerOrg: consumerOrg, SupplierClientID: clientID, Scopes: []string{scopeDelegert}}}
	if len(cfg.Delegations) != 1 || cfg.Delegations[0].ConsumerOrg != want[0].ConsumerOrg ||
		cfg.Delegations[0].SupplierClientID != clientID || !slices.Equal(cfg.Delegations[0].Scopes, want[0].Scopes) {
		t.Errorf("delegations %+v, want %+v", cfg.Delegations, want)
	}
	if cfg.Faults != (Faults{}) {
		t.Errorf("faults %+v, want none", cfg.Faults)
	}
	cfg.SigningKey = f.signingKey
	if _, err := New(cfg); err != nil {
		t.Errorf("New with the example: %v", err)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want []string // substrings of the error
	}{
		{"unknown key", func(s string) string {
			return strings.Replace(s, "    scopes: [svv:kjoretoy/ecoc, svv", "    scope: [svv:kjoretoy/ecoc, svv", 1)
		}, []string{"line 10", "field scope not found"}},
		{"misspelt top-level key", func(s string) string { return s + "token_lifetme: 60s\n" }, []string{"line 17", "token_lifetme"}},
		{"bad org number", func(s string) string { return strings.Replace(s, `"991825827"`, `"991825828"`, 1) },
			[]string{`client "portvakt-demo"`, "org_number", "check digit"}},
		{"issuer without slash", func(s string) string {
			return strings.Replace(s, "issuer: http://127.0.0.1:8089/", "issuer: http://127.0.0.1:8089", 1)
		}, []string{`must end with "/"`, `"http://127.0.0.1:8089/"`}},
		{"duration without unit", func(s string) string { return strings.Replace(s, "token_lifetime: 120s", "token_lifetime: 120", 1) },
			[]string{"line 4", "time.Duration"}},
		{"missing PEM file", func(s string) string { return strings.Replace(s, "ca/root.pem", "ca/missing.pem", 1) },
			[]string{"trust_roots", "missing.pem"}},
		{"unknown supplier", func(s string) string {
			return strings.Replace(s, "supplier_client_id: portvakt-demo", "supplier_client_id: portvakt-dmeo", 1)
		}, []string{`supplier client "portvakt-dmeo", which is not configured`}},
		{"scope the supplier lacks", func(s string) string {
			return strings.Replace(s, "    scopes: [svv:kjoretoy/ecoc.delegert]", "    scopes: [svv:kjoretoy/leasingtaker.delegert]", 1)
		}, []string{`scope "svv:kjoretoy/leasingtaker.delegert", which supplier client "portvakt-demo" does not have`}},
		{"fault rate too high", func(s string) string { return strings.Replace(s, "drop_rate: 0", "drop_rate: 1.5", 1) },
			[]string{"drop_rate 1.5 must be between 0 and 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeConfigDir(t)
			path := filepath.Join(dir, "config.yaml")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			edited := tt.edit(string(data))
			if edited == string(data) {
				t.Fatal("the edit changed nothing; testdata/example.yaml changed?")
			}
			if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = LoadConfig(path)
			if err == nil {
				t.Fatal("LoadConfig: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigClockOffset(t *testing.T) {
	dir := writeConfigDir(t)
	path := filepath.Join(dir, "config.yaml")
	data, _ := os.ReadFile(path)
	edited := strings.Replace(string(data), "clock_skew: 10s\n", "clock_skew: 10s\nclock_offset: -30s\n", 1)
	if edited == string(data) {
		t.Fatal("the edit changed nothing; testdata/example.yaml changed?")
	}
	os.WriteFile(path, []byte(edited), 0o644)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.ClockOffset != -30*time.Second {
		t.Errorf("ClockOffset = %s, want -30s", cfg.ClockOffset)
	}
}

func TestLoadConfigSystemUsers(t *testing.T) {
	dir := writeConfigDir(t)
	path := filepath.Join(dir, "config.yaml")
	data, _ := os.ReadFile(path)
	extra := `consumer_access:
  - {org: "974760673", scopes: [svv:kjoretoy/ecoc]}
system_users:
  - {client_id: portvakt-demo, system_id: 991825827_portvakt, customer: "313775429", external_ref: kunde-1, id: 704013ee-e82a-433e-83c5-a40e6e00d746}
  - {client_id: portvakt-demo, system_id: 991825827_portvakt, customer: "311111116"}
`
	os.WriteFile(path, append(data, extra...), 0o644)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	wantUsers := []SystemUser{
		{ClientID: clientID, SystemID: systemID, Customer: customerWithRef, ExternalRef: externalRef, ID: systemUserID},
		{ClientID: clientID, SystemID: systemID, Customer: customerPlain},
	}
	if !slices.Equal(cfg.SystemUsers, wantUsers) {
		t.Errorf("system users %+v\nwant %+v", cfg.SystemUsers, wantUsers)
	}
	if len(cfg.ConsumerAccess) != 1 || cfg.ConsumerAccess[0].Org != consumerOrg || !slices.Equal(cfg.ConsumerAccess[0].Scopes, []string{scopeECOC}) {
		t.Errorf("consumer access %+v", cfg.ConsumerAccess)
	}

	bad := strings.Replace(string(data)+extra, `customer: "311111116"`, `customer: "311111117"`, 1)
	os.WriteFile(path, []byte(bad), 0o644)
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "system user 2") || !strings.Contains(err.Error(), "customer") {
		t.Errorf("LoadConfig with a bad customer: %v, want an error naming system user 2's customer", err)
	}
}

func TestLoadConfigWithoutIssuer(t *testing.T) {
	dir := writeConfigDir(t)
	path := filepath.Join(dir, "config.yaml")
	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), "issuer: http://127.0.0.1:8089/\n", "", 1)), 0o644)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig without issuer: %v", err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "issuer is empty") {
		t.Errorf("New without issuer: %v, want an error about the issuer", err)
	}
}

func TestNewValidation(t *testing.T) {
	f := getFixture(t)
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"issuer without slash", func(c *Config) { c.Issuer = "https://test.maskinporten.no" }, `use "https://test.maskinporten.no/"`},
		{"issuer not http", func(c *Config) { c.Issuer = "ftp://x/" }, "absolute http:// or https:// URL"},
		{"bad org number", func(c *Config) { c.Clients[1].OrgNumber = "123" }, `client "other-supplier": org number`},
		{"duplicate client", func(c *Config) { c.Clients[1].ID = clientID }, "more than once"},
		{"no scopes", func(c *Config) { c.Clients[1].Scopes = nil }, `client "other-supplier" has no scopes`},
		{"scope with space", func(c *Config) { c.Clients[1].Scopes = []string{"a b"} }, "no spaces"},
		{"small key", func(c *Config) {
			c.Clients[0].Keys["small"] = &rsa.PublicKey{N: new(big.Int).Rsh(f.kidKey.N, 1200), E: 65537}
		}, `key "small" has`},
		{"no way to authenticate", func(c *Config) { c.TrustRoots = nil }, `client "other-supplier" has no keys and no trust roots`},
		{"lifetime fraction", func(c *Config) { c.TokenLifetime = 1500 * time.Millisecond }, "whole number of seconds"},
		{"delegation to unknown client", func(c *Config) { c.Delegations[0].SupplierClientID = "ghost" }, `supplier client "ghost", which is not configured`},
		{"delegated scope supplier lacks", func(c *Config) { c.Delegations[1].Scopes = []string{scopeECOC} },
			`scope "svv:kjoretoy/ecoc", which supplier client "other-supplier" does not have`},
		{"bad consumer org", func(c *Config) { c.Delegations[0].ConsumerOrg = "974760674" }, "consumer org"},
		{"bad consumer access org", func(c *Config) { c.ConsumerAccess = []ConsumerAccess{{Org: "974760674"}} }, "consumer access 1"},
		{"consumer access twice", func(c *Config) {
			c.ConsumerAccess = []ConsumerAccess{{Org: consumerOrg}, {Org: consumerOrg, Scopes: []string{scopeECOC}}}
		}, "listed more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config("http://127.0.0.1:8089/")
			tt.mutate(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
