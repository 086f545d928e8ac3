package p11

import (
	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// SigningKeyTemplates are the attributes of a signing-only key pair that
// Portvakt generates, whoever generates it (`portvakt hsm keygen`, or the
// daemon for a key to register). crypto11's defaults also allow
// decryption; an eSeal key that decrypts could be used as a decryption
// oracle, so it is switched off.
func SigningKeyTemplates(label string, id []byte) (public, private crypto11.AttributeSet, err error) {
	public, err = crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, nil, err
	}
	private, err = crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, nil, err
	}
	public.AddIfNotPresent([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
	})
	private.AddIfNotPresent(PrivateKeyPolicy())
	return public, private, nil
}

// PrivateKeyPolicy is what every private key Portvakt creates carries,
// generated or imported: on the token, private, sensitive, never
// extractable, for signing only.
func PrivateKeyPolicy() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
	}
}
