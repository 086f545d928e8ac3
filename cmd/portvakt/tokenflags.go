package main

import (
	"encoding/hex"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/portvakt/portvakt/hsm"
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
}

func (f *tokenFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.module, "module", "", "PKCS#11 module (default: the installed SoftHSM2)")
	fs.StringVar(&f.softhsmDir, "softhsm-dir", "", "SoftHSM2 directory made by `hsm init` (sets SOFTHSM2_CONF)")
	fs.StringVar(&f.label, "token", "", "token label (tokens are chosen by label, never by slot)")
	fs.StringVar(&f.pin.File, "pin-file", "", "file holding the user PIN")
	fs.StringVar(&f.pin.Env, "pin-env", "", "environment variable holding the user PIN (default "+defaultPINEnv+")")
}

// modulePath resolves the module, pointing SoftHSM2 at --softhsm-dir.
func (f *tokenFlags) modulePath() (string, error) {
	if f.module != "" {
		if _, err := os.Stat(f.module); err != nil {
			return "", fmt.Errorf("--module: %w", err)
		}
	}
	return softhsm.Resolve(f.softhsmDir, f.module)
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
