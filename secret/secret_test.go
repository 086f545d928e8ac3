package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secretValue = "s3cret-PIN-4711"

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// Chmod, so that the umask does not change the mode under test.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSourceLoad(t *testing.T) {
	t.Setenv("PORTVAKT_TEST_PIN", secretValue)
	t.Setenv("PORTVAKT_TEST_EMPTY", "")
	tests := []struct {
		name    string
		source  Source
		want    string
		wantErr string
	}{
		{"file with newline", Source{File: writeFile(t, secretValue+"\n", 0o600)}, secretValue, ""},
		{"file with CRLF", Source{File: writeFile(t, secretValue+"\r\n", 0o600)}, secretValue, ""},
		{"file without newline", Source{File: writeFile(t, secretValue, 0o600)}, secretValue, ""},
		{"file keeps inner spaces", Source{File: writeFile(t, " a b ", 0o600)}, " a b ", ""},
		{"env", Source{Env: "PORTVAKT_TEST_PIN"}, secretValue, ""},
		{"nothing", Source{}, "", "no source"},
		{"both", Source{File: "/x", Env: "Y"}, "", "not both"},
		{"missing file", Source{File: "/nonexistent/pin"}, "", "no such file"},
		{"empty file", Source{File: writeFile(t, "\n", 0o600)}, "", "is empty"},
		{"two lines", Source{File: writeFile(t, "a\nb\n", 0o600)}, "", "more than one line"},
		{"huge file", Source{File: writeFile(t, strings.Repeat("x", 1000), 0o600)}, "", "must hold only the secret"},
		{"directory", Source{File: t.TempDir()}, "", "not a regular file"},
		{"owner read-only file", Source{File: writeFile(t, secretValue, 0o400)}, secretValue, ""},
		{"group-readable file", Source{File: writeFile(t, secretValue, 0o640)}, "", "run `chmod 600 "},
		{"world-readable file", Source{File: writeFile(t, secretValue, 0o644)}, "", "run `chmod 600 "},
		{"others-only bits", Source{File: writeFile(t, secretValue, 0o601)}, "", "run `chmod 600 "},
		{"group-writable file", Source{File: writeFile(t, secretValue, 0o620)}, "", "run `chmod 600 "},
		{"unset env", Source{Env: "PORTVAKT_TEST_UNSET_XYZ"}, "", "is not set"},
		{"empty env", Source{Env: "PORTVAKT_TEST_EMPTY"}, "", "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.source.Load()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load() error = %v, want it to say %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() error = %v", err)
			}
			if got.Reveal() != tt.want {
				t.Fatalf("Load() = %q, want %q", got.Reveal(), tt.want)
			}
		})
	}
}

// TestErrorsNeverCarryContent: a file that is not a PIN (a key, a log) must
// not have its content echoed in the error.
func TestErrorsNeverCarryContent(t *testing.T) {
	for _, content := range []string{secretValue + "\nsecond line", strings.Repeat(secretValue, 50)} {
		_, err := Source{File: writeFile(t, content, 0o600)}.Load()
		if err == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(err.Error(), secretValue) {
			t.Fatalf("error reveals the file content: %v", err)
		}
	}
}

func TestValueIsRedactedEverywhere(t *testing.T) {
	p, err := New(secretValue)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, verb := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x", "%X", "%d", "%T %[1]v"} {
		fmt.Fprintf(&out, verb+"\n", p)
	}
	fmt.Fprintln(&out, p, &p, []Value{p}, struct{ P Value }{p}, map[string]Value{"pin": p})
	fmt.Fprintf(&out, "%+v %#v\n", struct{ P Value }{p}, struct{ P Value }{p})
	js, err := json.Marshal(struct{ P Value }{p})
	if err != nil {
		t.Fatal(err)
	}
	out.Write(js)
	for _, h := range []slog.Handler{slog.NewJSONHandler(&out, nil), slog.NewTextHandler(&out, nil)} {
		slog.New(h).Info("login", "pin", p, "group", slog.GroupValue(slog.Any("p", p)))
	}
	if strings.Contains(out.String(), secretValue) {
		t.Fatalf("PIN leaked in formatted output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), redacted) {
		t.Fatalf("expected %q in output:\n%s", redacted, out.String())
	}
}

func TestNewRefusesEmpty(t *testing.T) {
	if _, err := New(""); err == nil {
		t.Fatal("New(\"\") succeeded")
	}
}

func TestGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.pin")
	p, err := Generate(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Reveal()) != GeneratedLength {
		t.Fatalf("generated PIN has %d characters, want %d", len(p.Reveal()), GeneratedLength)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("PIN file mode = %v, want 0600", info.Mode().Perm())
	}
	loaded, err := Source{File: path}.Load()
	if err != nil || loaded.Reveal() != p.Reveal() {
		t.Fatalf("Load after Generate = %v, %v", loaded.Reveal() == p.Reveal(), err)
	}
	other, err := Generate(filepath.Join(t.TempDir(), "other.pin"))
	if err != nil || other.Reveal() == p.Reveal() {
		t.Fatalf("two generated PINs are equal or failed: %v", err)
	}
	if _, err := Generate(path); err == nil {
		t.Fatal("Generate overwrote an existing PIN file")
	}
	if again, _ := (Source{File: path}).Load(); again.Reveal() != p.Reveal() {
		t.Fatal("existing PIN file changed")
	}
}
