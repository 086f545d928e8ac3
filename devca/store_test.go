package devca

import (
	"errors"
	"github.com/portvakt/portvakt/eseal"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	dir := filepath.Join(t.TempDir(), "ca") // Save must create it
	if err := ca.Save(dir); err != nil {
		t.Fatalf("Save() error = %v", err)
	}

	wantModes := map[string]fs.FileMode{
		RootCertFile:    0o644,
		IssuingCertFile: 0o644,
		RootKeyFile:     0o600,
		IssuingKeyFile:  0o600,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(wantModes) {
		t.Errorf("dir holds %d entries, want exactly the %d CA files (temporary files left behind?)", len(entries), len(wantModes))
	}
	for name, want := range wantModes {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("Save() did not write %s: %v", name, err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", name, got, want)
		}
	}

	loaded, err := Load(dir)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if !loaded.Root.Equal(ca.Root) || !loaded.Issuing.Equal(ca.Issuing) {
		t.Fatal("Load() returned different certificates from those saved")
	}
	// The loaded keys must really be the CA's: an eSeal issued by the
	// loaded CA has to verify against the original root.
	key := testRSAKey(t, rsa2048)
	cert, err := loaded.IssueESeal(&key.PublicKey, eseal.Subject{OrgNumber: digdir, Organization: "DIGDIR"}, time.Hour)
	if err != nil {
		t.Fatalf("IssueESeal() after Load error = %v", err)
	}
	verifyESeal(t, ca, cert)
}

func TestSaveRefusesOverwrite(t *testing.T) {
	tests := []struct {
		name     string
		existing string // file present before Save
	}{
		{name: "full CA", existing: ""},
		{name: "only a root key", existing: RootKeyFile},
		{name: "only an issuing certificate", existing: IssuingCertFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.existing == "" {
				if err := newTestCA(t).Save(dir); err != nil {
					t.Fatalf("first Save() error = %v", err)
				}
			} else if err := os.WriteFile(filepath.Join(dir, tt.existing), []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)

			err := newTestCA(t).Save(dir)
			if err == nil {
				t.Fatal("second Save() error = nil, want refusal")
			}
			if !strings.Contains(err.Error(), "refusing to overwrite") {
				t.Errorf("Save() error = %q, want it to say it refuses to overwrite", err)
			}
			after := snapshot(t, dir)
			if len(after) != len(before) {
				t.Errorf("dir changed from %d to %d files", len(before), len(after))
			}
			for name, data := range before {
				if after[name] != data {
					t.Errorf("%s was modified", name)
				}
			}
		})
	}
}

// snapshot returns the contents of every file in dir, keyed by name.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(data)
	}
	return m
}

func TestLoadErrors(t *testing.T) {
	// other supplies files from an unrelated CA to mix into a good one.
	otherDir := t.TempDir()
	if err := newTestCA(t).Save(otherDir); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		wantErr []string
		wantIs  error
	}{
		{
			name:    "mismatched issuing key",
			corrupt: replaceWith(otherDir, IssuingKeyFile),
			wantErr: []string{IssuingKeyFile, "does not match the certificate in", IssuingCertFile},
		},
		{
			name:    "mismatched root key",
			corrupt: replaceWith(otherDir, RootKeyFile),
			wantErr: []string{RootKeyFile, "does not match"},
		},
		{
			name: "issuing CA from another root",
			corrupt: func(t *testing.T, dir string) {
				replaceWith(otherDir, IssuingCertFile)(t, dir)
				replaceWith(otherDir, IssuingKeyFile)(t, dir)
			},
			wantErr: []string{IssuingCertFile, "is not signed by", RootCertFile},
		},
		{
			name:    "missing root certificate",
			corrupt: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, RootCertFile)) },
			wantErr: []string{RootCertFile},
			wantIs:  fs.ErrNotExist,
		},
		{
			name: "key where a certificate belongs",
			corrupt: func(t *testing.T, dir string) {
				copyFile(t, filepath.Join(dir, RootKeyFile), filepath.Join(dir, RootCertFile))
			},
			wantErr: []string{RootCertFile, `"PRIVATE KEY" PEM block, want "CERTIFICATE"`},
		},
		{
			name: "not PEM",
			corrupt: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, IssuingKeyFile), []byte("garbage"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{IssuingKeyFile, "contains no PEM data"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := newTestCA(t).Save(dir); err != nil {
				t.Fatal(err)
			}
			tt.corrupt(t, dir)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load() error = nil, want error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Load() error = %q, want it to contain %q", err, want)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Load() error = %v, want it to wrap %v", err, tt.wantIs)
			}
		})
	}
}

// replaceWith returns a corruption that overwrites name in the CA directory
// with the same file from src.
func replaceWith(src, name string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		remove(t, filepath.Join(dir, name))
		copyFile(t, filepath.Join(src, name), filepath.Join(dir, name))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
