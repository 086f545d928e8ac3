package softhsmtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Directory returns the directory holding this token's files. SoftHSM2
// names token directories by a UUID and stores the label, padded with
// spaces to 32 bytes, in token.object; the padding makes the match exact.
func (tok Token) Directory(t testing.TB) string {
	t.Helper()
	if len(tok.Label) > 32 {
		t.Fatalf("token label %q is longer than PKCS#11's 32 bytes", tok.Label)
	}
	padded := []byte(tok.Label + strings.Repeat(" ", 32-len(tok.Label)))
	entries, err := os.ReadDir(dir.TokenDir())
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		obj, err := os.ReadFile(filepath.Join(dir.TokenDir(), e.Name(), "token.object"))
		if err == nil && bytes.Contains(obj, padded) {
			found = append(found, filepath.Join(dir.TokenDir(), e.Name()))
		}
	}
	if len(found) != 1 {
		t.Fatalf("token %q: %d directories hold it, want 1 (%v)", tok.Label, len(found), found)
	}
	return found[0]
}

// TakeAway moves the token's directory out of SoftHSM2's sight, as an HSM
// that went away does: sessions on it fail and it is no longer listed. The
// returned function brings it back; it runs at the end of the test too,
// so a failed test leaves no token missing.
func (tok Token) TakeAway(t testing.TB) (bringBack func()) {
	t.Helper()
	if impl == OpenCryptoki {
		return tok.takeAwayOpenCryptoki(t)
	}
	path := tok.Directory(t)
	return tok.moveAway(t, path, filepath.Join(filepath.Dir(dir.TokenDir()), "away-"+filepath.Base(path)))
}

// moveAway renames the token's directory path to away and returns how to
// bring it back, once; the test's end brings it back too.
func (tok Token) moveAway(t testing.TB, path, away string) (bringBack func()) {
	t.Helper()
	if err := os.Rename(path, away); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	bringBack = func() {
		once.Do(func() {
			if err := os.Rename(away, path); err != nil {
				panic(fmt.Sprintf("bringing token %q back: %v", tok.Label, err))
			}
		})
	}
	t.Cleanup(bringBack)
	return bringBack
}
