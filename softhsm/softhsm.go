// Package softhsm prepares SoftHSM2 for development, the demo and tests:
// it finds the module and gives each use its own token directory and
// configuration file, so nothing touches the machine's /var/lib/softhsm.
//
// SoftHSM2 reads the file named by SOFTHSM2_CONF when the module is
// initialised, so Activate must run before the first PKCS#11 call.
package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ModuleCandidates are where Debian, Ubuntu, Fedora and Homebrew install
// the SoftHSM2 PKCS#11 module.
var ModuleCandidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// ErrNotInstalled means no SoftHSM2 module was found.
var ErrNotInstalled = errors.New("SoftHSM2 is not installed: install it (Debian/Ubuntu: apt-get install softhsm2) or give the module path")

// FindModule returns the path of the installed SoftHSM2 module.
func FindModule() (string, error) {
	for _, path := range ModuleCandidates {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", ErrNotInstalled
}

// Dir is a directory holding a SoftHSM2 configuration and its tokens.
type Dir string

// ConfigFile is the SoftHSM2 configuration file in the directory.
func (d Dir) ConfigFile() string { return filepath.Join(string(d), "softhsm2.conf") }

// TokenDir is where SoftHSM2 keeps the tokens' files.
func (d Dir) TokenDir() string { return filepath.Join(string(d), "tokens") }

// Prepare creates the directory, its token directory (mode 0700: the token
// files hold the keys, encrypted under the PIN) and its configuration.
// It is idempotent: an existing configuration is kept if it is ours.
func Prepare(path string) (Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("SoftHSM2 directory %s: %w", path, err)
	}
	d := Dir(abs)
	if err := os.MkdirAll(d.TokenDir(), 0o700); err != nil {
		return "", fmt.Errorf("creating SoftHSM2 token directory: %w", err)
	}
	want := d.config()
	existing, err := os.ReadFile(d.ConfigFile())
	switch {
	case err == nil && string(existing) == want:
		return d, nil
	case err == nil:
		return "", fmt.Errorf("%s exists and is not the configuration Portvakt writes; remove it or choose another directory", d.ConfigFile())
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("reading SoftHSM2 configuration: %w", err)
	}
	tmp := d.ConfigFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(want), 0o600); err != nil {
		return "", fmt.Errorf("writing SoftHSM2 configuration: %w", err)
	}
	if err := os.Rename(tmp, d.ConfigFile()); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("writing SoftHSM2 configuration: %w", err)
	}
	return d, nil
}

func (d Dir) config() string {
	return "# Written by portvakt for this directory's tokens.\n" +
		"directories.tokendir = " + d.TokenDir() + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
}

// Activate points SoftHSM2 at this directory by setting SOFTHSM2_CONF for
// the process. It affects module initialisations from now on.
func (d Dir) Activate() error {
	if _, err := os.Stat(d.ConfigFile()); err != nil {
		return fmt.Errorf("SoftHSM2 directory %s is not prepared (run `portvakt hsm init`): %w", string(d), err)
	}
	return os.Setenv("SOFTHSM2_CONF", d.ConfigFile())
}
