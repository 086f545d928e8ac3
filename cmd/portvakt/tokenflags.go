package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/softhsm"
)

// defaultPINEnv is read when neither --pin-file nor --pin-env is given.
const defaultPINEnv = "PORTVAKT_PIN"

// tokenFlags select a PKCS#11 module, a token and the PIN for it. The PIN
// is only ever read from a file or an environment variable.
type tokenFlags struct {
	module     string
	softhsmDir string
	label      string
	pin        secret.Source

	// What the command resolved, for its errors: the module's path, and
	// where the PIN came from (never the PIN).
	modulePathUsed string
	pinFrom        string
}

// register adds the flags to cmd, and makes the errors of its RunE say
// what to do about the token (see explain).
func (f *tokenFlags) register(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { return f.explain(run(c, args)) }
	}
	fs := cmd.Flags()
	fs.StringVar(&f.module, "module", "", "PKCS#11 module (default: the installed SoftHSM2)")
	fs.StringVar(&f.softhsmDir, "softhsm-dir", "", "SoftHSM2 directory made by hsm init (sets SOFTHSM2_CONF)")
	fs.StringVar(&f.label, "token", "", "token label (tokens are chosen by label, never by slot)")
	fs.StringVar(&f.pin.File, "pin-file", "", "file holding the user PIN")
	fs.StringVar(&f.pin.Env, "pin-env", "", "environment variable holding the user PIN (default "+defaultPINEnv+")")
}

// explain makes a PKCS#11 failure a sentence naming the token and module
// (p11.Explain) and, when the token refused or locked the PIN, where the
// PIN was read from: the file or variable to look at.
func (f *tokenFlags) explain(err error) error {
	if err == nil || f.label == "" {
		return err
	}
	err = p11.Explain(f.modulePathUsed, f.label, err)
	var te *p11.TokenError
	if f.pinFrom != "" && errors.As(err, &te) && te.AboutPIN() {
		return fmt.Errorf("user PIN from %s: %w", f.pinFrom, err)
	}
	return err
}

// modulePath resolves the module, pointing SoftHSM2 at --softhsm-dir.
func (f *tokenFlags) modulePath() (string, error) {
	if f.module != "" {
		if _, err := os.Stat(f.module); err != nil {
			return "", fmt.Errorf("--module: %w", err)
		}
	}
	path, err := softhsm.Resolve(f.softhsmDir, f.module)
	f.modulePathUsed = path
	return path, err
}

// token resolves everything needed to log in.
func (f *tokenFlags) token() (hsm.Token, error) {
	if f.label == "" {
		return hsm.Token{}, usageError{fmt.Errorf("--token is required")}
	}
	module, err := f.modulePath()
	if err != nil {
		return hsm.Token{}, err
	}
	p, err := loadPIN(f.pin, "--pin-file", "--pin-env")
	if err != nil {
		return hsm.Token{}, err
	}
	switch {
	case f.pin.File != "":
		f.pinFrom = "--pin-file " + f.pin.File
	case f.pin.Env != "":
		f.pinFrom = "--pin-env " + f.pin.Env
	default:
		f.pinFrom = "$" + defaultPINEnv
	}
	return hsm.Token{Module: module, Label: f.label, PIN: p}, nil
}

func loadPIN(src secret.Source, fileFlag, envFlag string) (secret.Value, error) {
	if src.IsZero() {
		if _, ok := os.LookupEnv(defaultPINEnv); !ok {
			return secret.Value{}, usageError{fmt.Errorf("no PIN: give %s FILE or %s VARIABLE, or set %s", fileFlag, envFlag, defaultPINEnv)}
		}
		src.Env = defaultPINEnv
	}
	p, err := src.Load()
	if err != nil {
		return secret.Value{}, fmt.Errorf("user PIN: %w", err)
	}
	return p, nil
}

// keyFlags select a key by label and/or id.
type keyFlags struct {
	label string
	id    string
}

func (k *keyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&k.label, "label", "", "key label (CKA_LABEL)")
	fs.StringVar(&k.id, "id", "", "key id (CKA_ID) in hex")
}

func (k *keyFlags) selector() (hsm.KeySelector, error) {
	id, err := parseKeyID(k.id)
	if err != nil {
		return hsm.KeySelector{}, err
	}
	if k.label == "" && len(id) == 0 {
		return hsm.KeySelector{}, usageError{fmt.Errorf("select the key with --label or --id")}
	}
	return hsm.KeySelector{Label: k.label, ID: id}, nil
}

func parseKeyID(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	id, err := hex.DecodeString(s)
	if err != nil {
		return nil, usageError{fmt.Errorf("--id %q is not hex: %w", s, err)}
	}
	return id, nil
}
