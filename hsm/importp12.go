package hsm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/secret"
)

var (
	// ErrMismatch means a certificate does not hold the key's public half.
	ErrMismatch = errors.New("certificate and key do not match")
	// ErrWrongPassword means the PKCS#12 password is wrong.
	ErrWrongPassword = errors.New("wrong PKCS#12 password")
	// ErrBadPKCS12 means the file is not a usable PKCS#12 file.
	ErrBadPKCS12 = errors.New("not a usable PKCS#12 file")
)

// ImportPKCS12 moves the key and certificates of a .p12 file (as Buypass
// and Commfides deliver them) into the token: the key becomes a sensitive,
// non-extractable object and can never be read back. Everything is checked
// before anything is written, and a failure while writing removes what was
// written. spec.Bits is ignored.
func ImportPKCS12(t Token, data []byte, password secret.Value, spec KeySpec) (ImportResult, error) {
	key, leaf, cas, err := pkcs12.DecodeChain(data, password.Reveal())
	if err != nil {
		return ImportResult{}, explainPKCS12(err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return ImportResult{}, fmt.Errorf("%w: its key is a %T; Maskinporten grants need an RSA key", ErrBadPKCS12, key)
	}
	if rsaKey.N.BitLen() < MinKeyBits {
		return ImportResult{}, fmt.Errorf("%w: its key has %d bits; at least %d are required", ErrBadPKCS12, rsaKey.N.BitLen(), MinKeyBits)
	}
	if len(rsaKey.Primes) != 2 {
		return ImportResult{}, fmt.Errorf("%w: its key has %d primes; PKCS#11 stores two-prime RSA keys only", ErrBadPKCS12, len(rsaKey.Primes))
	}
	if err := rsaKey.Validate(); err != nil {
		return ImportResult{}, fmt.Errorf("%w: its private key is inconsistent: %w", ErrBadPKCS12, err)
	}
	if err := matchKey(leaf, &rsaKey.PublicKey); err != nil {
		return ImportResult{}, fmt.Errorf("the .p12 file's certificate does not belong to its key: %w", err)
	}
	if spec.Label == "" {
		return ImportResult{}, errors.New("a key label is required")
	}
	if len(spec.ID) == 0 {
		spec.ID = make([]byte, 16)
		if _, err := rand.Read(spec.ID); err != nil {
			return ImportResult{}, err
		}
	}
	chain := append([]*x509.Certificate{leaf}, cas...)

	var result ImportResult
	err = t.withToken(func(_ *crypto11.Context, raw *rawSession) (err error) {
		if err := checkFree(raw, spec.Label, spec.ID); err != nil {
			return err
		}
		tx := &transaction{raw: raw}
		defer func() {
			if rbErr := tx.rollback(); rbErr != nil {
				err = fmt.Errorf("%w; %w", err, rbErr)
			}
		}()
		if err := tx.create("the private key", privateKeyTemplate(rsaKey, spec)); err != nil {
			return err
		}
		if err := tx.create("the public key", publicKeyTemplate(&rsaKey.PublicKey, spec)); err != nil {
			return err
		}
		result.Key = p11.KeyObject{ID: spec.ID, Label: spec.Label, Public: &rsaKey.PublicKey}
		result.CertificatesStored, result.Skipped, err = storeCertificates(raw, result.Key, chain, tx)
		if err != nil {
			return err
		}
		if result.Key, err = findKey(raw, KeySelector{Label: spec.Label, ID: spec.ID}); err != nil {
			return err
		}
		tx.commit()
		return nil
	})
	return result, err
}

func explainPKCS12(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword), errors.Is(err, pkcs12.ErrDecryption):
		// The MAC is keyed by the password, so a damaged file and a wrong
		// password look the same.
		return fmt.Errorf("%w: the file could not be decrypted with the password given (a wrong password, or a damaged file)", ErrWrongPassword)
	case msg == "pkcs12: private key missing":
		return fmt.Errorf("%w: the file holds no private key (is it a certificate-only trust store?)", ErrBadPKCS12)
	case msg == "pkcs12: certificate missing":
		return fmt.Errorf("%w: the file holds no certificate for its key", ErrBadPKCS12)
	case msg == "pkcs12: expected exactly one key bag":
		return fmt.Errorf("%w: the file holds more than one private key; export each key to its own .p12 file", ErrBadPKCS12)
	default:
		var notImplemented pkcs12.NotImplementedError
		if errors.As(err, &notImplemented) {
			return fmt.Errorf("%w: it uses an algorithm that is not supported (%v); re-export it with AES-256 (openssl pkcs12 -export)", ErrBadPKCS12, err)
		}
		return fmt.Errorf("%w: the file is damaged or not PKCS#12: %w", ErrBadPKCS12, err)
	}
}

func privateKeyTemplate(key *rsa.PrivateKey, spec KeySpec) []*pkcs11.Attribute {
	key.Precompute()
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_ID, spec.ID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, spec.Label),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, key.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(key.E)).Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, key.D.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_1, key.Primes[0].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_2, key.Primes[1].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_1, key.Precomputed.Dp.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_2, key.Precomputed.Dq.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_COEFFICIENT, key.Precomputed.Qinv.Bytes()),
	}, p11.PrivateKeyPolicy()...)
}

func publicKeyTemplate(key *rsa.PublicKey, spec KeySpec) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, spec.ID),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, spec.Label),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, key.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(key.E)).Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
	}
}
