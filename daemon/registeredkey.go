package daemon

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokenservice"
)

// checkRegisteredKey checks what can be checked of a key registered at
// Digdir by kid alone, which has no certificate to check it against: that
// the HSM signs with it (one test signature, verified with the key's public
// half) and, given public_key_file, that it is the key registered there.
// at names the environment as configuration messages do.
func (d *Daemon) checkRegisteredKey(s *signer.Signer, e config.Environment, at string) error {
	if err := s.CheckSigns(); err != nil {
		return fmt.Errorf("environment %s: %w", e.Name, err)
	}
	public, _ := s.Public().(*rsa.PublicKey)
	if e.PublicKeyFile != "" {
		registered, err := config.ReadPublicKey(e.PublicKeyFile)
		if err != nil {
			return fmt.Errorf("%s.public_key_file: %w", at, err)
		}
		if !registered.Equal(public) {
			return fmt.Errorf("%s.public_key_file: the HSM key %s is not the key registered for kid %s: its public key has SHA-256 %s, the file %s holds %s; select the key registered at Digdir, or give its public key",
				at, keyName(e), e.KeyIDHeader, publicKeySum(public), e.PublicKeyFile, publicKeySum(registered))
		}
	}
	d.log.Info("environment signs with a registered key: grants carry its kid and no certificate",
		"environment", e.Name, "certificate", tokenservice.NoCertificate(e.KeyIDHeader), "public_key_sha256", publicKeySum(public),
		"checked_against_public_key_file", e.PublicKeyFile != "")
	return nil
}

// keyName names the configured key as `portvakt hsm list` shows it.
func keyName(e config.Environment) string {
	switch {
	case e.KeyLabel != "" && e.KeyID != "":
		return fmt.Sprintf("label %q id %s", e.KeyLabel, e.KeyID)
	case e.KeyID != "":
		return "id " + e.KeyID
	default:
		return fmt.Sprintf("label %q", e.KeyLabel)
	}
}

// publicKeySum is the hex SHA-256 of the key's PKIX (SubjectPublicKeyInfo)
// DER, as `openssl pkey -pubin -outform der | sha256sum` prints it.
func publicKeySum(key *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return "?"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
