// Package pin reads the PIN that unlocks an HSM token and keeps it out of
// logs, errors and formatted output.
//
// A PIN comes from a file or from an environment variable, never from a
// command-line flag: flag values are visible to every user of the machine in
// the process list and end up in shell history.
package pin

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// PIN is a secret. Every way of printing it (fmt verbs, slog, JSON, text
// marshalling) yields "[redacted]"; only Reveal returns the value, and only
// the code that hands it to PKCS#11 should call it.
type PIN struct {
	value string
}

const redacted = "[redacted]"

// New wraps a PIN value. Empty PINs are refused: every token Portvakt uses
// requires a login.
func New(value string) (PIN, error) {
	if value == "" {
		return PIN{}, errors.New("the PIN is empty")
	}
	return PIN{value: value}, nil
}

// Reveal returns the PIN's value for the PKCS#11 login call.
func (p PIN) Reveal() string { return p.value }

// IsZero reports whether no PIN has been set.
func (p PIN) IsZero() bool { return p.value == "" }

// String implements fmt.Stringer without revealing the PIN.
func (p PIN) String() string { return redacted }

// GoString implements fmt.GoStringer so that %#v does not reveal the PIN.
func (p PIN) GoString() string { return redacted }

// Format implements fmt.Formatter so that no verb (%s, %v, %q, %x, %d …)
// can print the value.
func (p PIN) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (p PIN) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (and so JSON and YAML).
func (p PIN) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Source says where a PIN is read from: a file, or an environment variable.
// Exactly one must be set.
type Source struct {
	// File is the path of a file holding the PIN. A single trailing newline
	// (as editors and `echo` write) is removed; other whitespace is kept.
	File string `yaml:"file,omitempty"`
	// Env is the name of an environment variable holding the PIN.
	Env string `yaml:"env,omitempty"`
}

// IsZero reports whether the source names neither a file nor a variable.
func (s Source) IsZero() bool { return s.File == "" && s.Env == "" }

// String describes the source without its content.
func (s Source) String() string {
	switch {
	case s.File != "" && s.Env != "":
		return fmt.Sprintf("file %s and environment variable %s", s.File, s.Env)
	case s.File != "":
		return "file " + s.File
	case s.Env != "":
		return "environment variable " + s.Env
	default:
		return "no PIN source"
	}
}

// Load reads the PIN. Errors name the source but never carry its content.
func (s Source) Load() (PIN, error) {
	switch {
	case s.File != "" && s.Env != "":
		return PIN{}, fmt.Errorf("give the PIN by a file or by an environment variable, not both (got %s)", s)
	case s.File != "":
		return loadFile(s.File)
	case s.Env != "":
		value, ok := os.LookupEnv(s.Env)
		if !ok {
			return PIN{}, fmt.Errorf("PIN environment variable %s is not set", s.Env)
		}
		if value == "" {
			return PIN{}, fmt.Errorf("PIN environment variable %s is empty", s.Env)
		}
		return PIN{value: value}, nil
	default:
		return PIN{}, errors.New("no PIN source: give a PIN file or the name of an environment variable that holds the PIN")
	}
}

func loadFile(path string) (PIN, error) {
	info, err := os.Stat(path)
	if err != nil {
		// The *PathError names the path and the cause, never file content.
		return PIN{}, fmt.Errorf("reading PIN file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return PIN{}, fmt.Errorf("PIN file %s is not a regular file", path)
	}
	if info.Size() > maxPINFileSize {
		return PIN{}, fmt.Errorf("PIN file %s is %d bytes; a PIN file holds only the PIN (at most %d bytes)", path, info.Size(), maxPINFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return PIN{}, fmt.Errorf("reading PIN file: %w", err)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return PIN{}, fmt.Errorf("PIN file %s is empty", path)
	}
	if strings.ContainsAny(string(data), "\n\x00") {
		return PIN{}, fmt.Errorf("PIN file %s holds more than one line; it must hold only the PIN", path)
	}
	return PIN{value: string(data)}, nil
}

// maxPINFileSize bounds what Load reads, so that a mistaken path (a key file,
// a log) is refused instead of being sent to the token as a PIN.
const maxPINFileSize = 256
