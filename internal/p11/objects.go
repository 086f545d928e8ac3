package p11

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// CertificateObject is an X.509 certificate stored on a token.
type CertificateObject struct {
	Handle      pkcs11.ObjectHandle
	ID          []byte
	Label       string
	Certificate *x509.Certificate
}

// KeyObject is a private key stored on a token, with the attributes that
// say whether it can ever leave the token.
type KeyObject struct {
	Handle pkcs11.ObjectHandle
	ID     []byte
	Label  string
	// KeyType is CKA_KEY_TYPE (pkcs11.CKK_RSA, …).
	KeyType uint
	// Public is the key's public half, read from the private key object's
	// modulus and exponent (RSA only; nil otherwise).
	Public *rsa.PublicKey

	Sensitive   bool
	Extractable bool
	// AlwaysSensitive and NeverExtractable are the token's
	// CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE for a key it
	// generated, and false for any other: see privateKey.
	AlwaysSensitive  bool
	NeverExtractable bool
	Local            bool // generated on the token
}

// findObjects returns every handle matching template.
func (m *Module) findObjects(session pkcs11.SessionHandle, template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := m.FindObjectsInit(session, template); err != nil {
		return nil, fmt.Errorf("searching token objects: %w", err)
	}
	var all []pkcs11.ObjectHandle
	for {
		batch, _, err := m.FindObjects(session, 64)
		if err != nil {
			_ = m.FindObjectsFinal(session)
			return nil, fmt.Errorf("searching token objects: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		all = append(all, batch...)
	}
	if err := m.FindObjectsFinal(session); err != nil {
		return nil, fmt.Errorf("searching token objects: %w", err)
	}
	return all, nil
}

// Certificates returns every X.509 certificate object on the session's token.
func (m *Module) Certificates(session pkcs11.SessionHandle) ([]CertificateObject, error) {
	handles, err := m.findObjects(session, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
	})
	if err != nil {
		return nil, err
	}
	certs := make([]CertificateObject, 0, len(handles))
	for _, h := range handles {
		attrs, err := m.GetAttributeValue(session, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil),
		})
		if err != nil {
			return nil, fmt.Errorf("reading certificate object: %w", err)
		}
		cert, err := x509.ParseCertificate(attrs[2].Value)
		if err != nil {
			return nil, fmt.Errorf("certificate object %q (id %x) on the token does not parse: %w", attrs[1].Value, attrs[0].Value, err)
		}
		certs = append(certs, CertificateObject{Handle: h, ID: attrs[0].Value, Label: string(attrs[1].Value), Certificate: cert})
	}
	return certs, nil
}

// PrivateKeys returns every private key object on the session's token
// (which must be logged in: private keys are private objects).
func (m *Module) PrivateKeys(session pkcs11.SessionHandle) ([]KeyObject, error) {
	handles, err := m.findObjects(session, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
	})
	if err != nil {
		return nil, err
	}
	keys := make([]KeyObject, 0, len(handles))
	for _, h := range handles {
		key, err := m.privateKey(session, h)
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func (m *Module) privateKey(session pkcs11.SessionHandle, h pkcs11.ObjectHandle) (KeyObject, error) {
	attrs, err := m.GetAttributeValue(session, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil),
	})
	if err != nil {
		return KeyObject{}, fmt.Errorf("reading private key object: %w", err)
	}
	key := KeyObject{
		Handle:           h,
		ID:               attrs[0].Value,
		Label:            string(attrs[1].Value),
		KeyType:          DecodeULong(attrs[2].Value),
		Sensitive:        boolean(attrs[3].Value),
		Extractable:      boolean(attrs[4].Value),
		AlwaysSensitive:  boolean(attrs[5].Value),
		NeverExtractable: boolean(attrs[6].Value),
		Local:            boolean(attrs[7].Value),
	}
	if !key.Local {
		// A private key the token did not generate was outside it before:
		// created from its parts (C_CreateObject, as `hsm import-p12` does)
		// or unwrapped. PKCS#11 has unwrapped keys report both attributes
		// false, and SoftHSM2 created ones too, but opencryptoki 3.8 derives
		// them from CKA_SENSITIVE and CKA_EXTRACTABLE at C_CreateObject and
		// calls an imported key "never extractable". Only the token's own
		// generation is evidence that a key never left it.
		key.AlwaysSensitive, key.NeverExtractable = false, false
	}
	if key.KeyType == pkcs11.CKK_RSA {
		pub, err := m.GetAttributeValue(session, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return KeyObject{}, fmt.Errorf("reading the public half of key %q: %w", key.Label, err)
		}
		key.Public = &rsa.PublicKey{
			N: new(big.Int).SetBytes(pub[0].Value),
			E: int(new(big.Int).SetBytes(pub[1].Value).Int64()),
		}
	}
	return key, nil
}

func boolean(v []byte) bool { return len(v) == 1 && v[0] != 0 }

// DecodeULong decodes a CK_ULONG attribute value (CKA_CLASS, CKA_KEY_TYPE
// …), which the module writes in the host's byte order.
func DecodeULong(v []byte) uint {
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v))
	case 4:
		return uint(binary.NativeEndian.Uint32(v))
	default:
		return 0
	}
}
