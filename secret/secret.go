// Package secret keeps secrets (HSM PINs, PKCS#12 passwords, access
// tokens) out of logs, errors and formatted output, and reads them from
// files or environment variables.
//
// A secret comes from a file or an environment variable, never from a
// command-line flag: flag values are visible to every user of the machine in
// the process list and end up in shell history.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Value is a secret. Every way of printing it (fmt verbs, slog, JSON, text
// marshalling) yields "[redacted]"; only Reveal returns it, and only the
// code that hands it on (to PKCS#11, to a caller that asked for a token)
// should call it.
//
// The secret sits behind a pointer to a string type: when a Value is
// reached through an unexported field (a Signer's token, a cache entry), fmt
// cannot call its methods and prints its fields by reflection instead, and a
// pointer to a string it prints only as an address, at any depth and also
// in its %!verb(...) reports of a verb that does not fit. So no holder of a
// Value can print the secret, whatever its fields are called.
type Value struct {
	p *plain
}

// plain is the secret. It is a string type, not a struct, so that fmt never
// follows a pointer to it; it formats itself redacted too, in case a plain
// is ever printed directly.
type plain string

// Format implements fmt.Formatter without revealing the secret.
func (plain) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// wrap makes a Value of a non-empty secret.
func wrap(value string) Value {
	p := plain(value)
	return Value{p: &p}
}

const redacted = "[redacted]"

// New wraps a secret. Empty secrets are refused: an empty PIN or password
// is always a configuration mistake.
func New(value string) (Value, error) {
	if value == "" {
		return Value{}, errors.New("the secret is empty")
	}
	return wrap(value), nil
}

// Reveal returns the secret, or "" for the zero Value.
func (p Value) Reveal() string {
	if p.p == nil {
		return ""
	}
	return string(*p.p)
}

// IsZero reports whether no secret has been set.
func (p Value) IsZero() bool { return p.p == nil }

// String implements fmt.Stringer without revealing the secret.
func (p Value) String() string { return redacted }

// GoString implements fmt.GoStringer so that %#v does not reveal it.
func (p Value) GoString() string { return redacted }

// Format implements fmt.Formatter so that no verb (%s, %v, %q, %x, %d …)
// can print the value.
func (p Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (p Value) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (and so JSON and YAML).
func (p Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Source says where a secret is read from: a file, or an environment
// variable. Exactly one must be set.
type Source struct {
	// File is the path of a file holding the secret. A single trailing
	// newline (as editors and `echo` write) is removed; other whitespace is
	// kept.
	File string `yaml:"file,omitempty"`
	// Env is the name of an environment variable holding the secret.
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
		return "no source"
	}
}

// Load reads the secret. Errors name the source but never carry its content.
func (s Source) Load() (Value, error) {
	switch {
	case s.File != "" && s.Env != "":
		return Value{}, fmt.Errorf("give a file or an environment variable, not both (got %s)", s)
	case s.File != "":
		return loadFile(s.File)
	case s.Env != "":
		value, ok := os.LookupEnv(s.Env)
		if !ok {
			return Value{}, fmt.Errorf("environment variable %s is not set", s.Env)
		}
		if value == "" {
			return Value{}, fmt.Errorf("environment variable %s is empty", s.Env)
		}
		return wrap(value), nil
	default:
		return Value{}, errors.New("no source: give a file or the name of an environment variable that holds it")
	}
}

func loadFile(path string) (Value, error) {
	info, err := os.Stat(path)
	if err != nil {
		// The *PathError names the path and the cause, never file content.
		return Value{}, fmt.Errorf("reading secret file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return Value{}, fmt.Errorf("secret file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return Value{}, fmt.Errorf("secret file %s has mode %#o, so other users may read it: run `chmod 600 %s` (and change the secret if it was exposed)", path, perm, path)
	}
	if info.Size() > maxFileSize {
		return Value{}, fmt.Errorf("secret file %s is %d bytes; it must hold only the secret (at most %d bytes)", path, info.Size(), maxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Value{}, fmt.Errorf("reading secret file: %w", err)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return Value{}, fmt.Errorf("secret file %s is empty", path)
	}
	if strings.ContainsAny(string(data), "\n\x00") {
		return Value{}, fmt.Errorf("secret file %s holds more than one line; it must hold only the secret", path)
	}
	return wrap(string(data)), nil
}

// maxFileSize bounds what Load reads, so that a mistaken path (a key file,
// a log) is refused instead of being sent to a token as a PIN.
const maxFileSize = 256
