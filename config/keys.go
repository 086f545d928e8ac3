package config

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/portvakt/portvakt/maskinporten"
)

// minRegisteredKeyBits is the smallest registered key Digdir accepts.
const minRegisteredKeyBits = 2048

// EnvironmentField is how messages name environments[i]:
// "environments[0] (prod)", or without the name when it has none.
func (c *Config) EnvironmentField(i int) string {
	if name := c.Environments[i].Name; name != "" {
		return fmt.Sprintf("environments[%d] (%s)", i, name)
	}
	return fmt.Sprintf("environments[%d]", i)
}

// RegisteredKeyOnly reports whether the environment signs with a key
// registered at Digdir and sends only its kid: no certificate is read or
// sent.
func (e Environment) RegisteredKeyOnly() bool { return e.KeyIDHeader != "" && !e.KeyIDWithX5C }

// validateKeyMode checks kid, kid_with_x5c, public_key_file and
// certificate_file together.
func validateKeyMode(v *validator, at, path string, e Environment) {
	kid := e.KeyIDHeader
	switch {
	case kid == "" && e.KeyIDWithX5C:
		v.add(path+".kid_with_x5c", at+".kid_with_x5c: it sends x5c beside a registered key's kid; give the kid too, or remove kid_with_x5c (without kid the grant carries x5c alone)")
	case kid != "" && strings.TrimSpace(kid) != kid:
		v.add(path+".kid", fmt.Sprintf("%s.kid %q: remove the spaces around it; Maskinporten compares the kid exactly", at, kid))
	case e.RegisteredKeyOnly() && e.CertificateFile != "":
		v.add(path+".certificate_file", at+".certificate_file: with kid the grant carries no certificate; set kid_with_x5c: true to send it as x5c beside the kid, or remove certificate_file")
	}
	if e.PublicKeyFile == "" {
		return
	}
	if kid == "" {
		v.add(path+".public_key_file", at+".public_key_file: it is the public key registered for a kid at Digdir; give the kid too, or remove public_key_file")
		return
	}
	if _, err := ReadPublicKey(e.PublicKeyFile); err != nil {
		v.add(path+".public_key_file", fmt.Sprintf("%s.public_key_file: %v; give the PEM file of the public key registered for the kid", at, err))
	}
}

// ReadPublicKey reads the public key registered at Digdir for a kid: a PEM
// file holding one PUBLIC KEY (PKIX) or RSA PUBLIC KEY (PKCS #1) block of an
// RSA key of at least 2048 bits.
func ReadPublicKey(path string) (*rsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s is not PEM (expected -----BEGIN PUBLIC KEY-----)", path)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("%s holds more than one PEM block; give the one public key registered for the kid", path)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s holds a %q block; give the registered public key as PUBLIC KEY (`portvakt audit public-key --label LABEL` exports it from the HSM)", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rsaKey, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T key; Maskinporten grants are signed with RSA keys", path, key)
	}
	if bits := rsaKey.N.BitLen(); bits < minRegisteredKeyBits {
		return nil, fmt.Errorf("%s holds a %d-bit key; Digdir accepts registered keys of at least %d bits", path, bits, minRegisteredKeyBits)
	}
	return rsaKey, nil
}

// Warnings are what the configuration may do but should not: today, an
// environment on a preset Digdir has retired. The daemon logs them at
// start, and `serve --check` prints them.
func (c *Config) Warnings() []string {
	var warnings []string
	for i, e := range c.Environments {
		if w := maskinporten.PresetWarning(e.Preset); w != "" {
			warnings = append(warnings, fmt.Sprintf("%s.preset %s: %s", c.EnvironmentField(i), e.Preset, w))
		}
	}
	return warnings
}
