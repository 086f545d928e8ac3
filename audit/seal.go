package audit

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Seal is what a checkpoint record states, signed with the audit key: a
// private key held in the HSM beside the eSeal, but never the eSeal itself.
// A checkpoint vouches that the daemon instance that wrote it also wrote
// records From to HeadSeq, whose last one has HeadHash; through the hash
// chain, HeadHash commits to every record before it. Someone who can write
// the file but does not hold the audit key can append records, and can
// rewrite the chain, but cannot make a checkpoint for them: Verify reports
// records after the last checkpoint as an unsealed tail, and a checkpoint
// whose head no longer matches the chain as an edit.
//
// The audit key is RSA, signing RS256 (PKCS#1 v1.5 with SHA-256): the one
// mechanism (CKM_RSA_PKCS) every HSM Portvakt supports offers and its tests
// run on each, so sealing needs no second code path or mechanism.
type Seal struct {
	// Instance names the daemon run that wrote and sealed the records.
	Instance string `json:"instance"`
	// From is the first record this instance vouches for: its start record.
	// Records before it that no earlier checkpoint vouches for stay
	// unsealed: a daemon never seals what it did not write.
	From uint64 `json:"from"`
	// HeadSeq and HeadHash name the last record sealed.
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// Key is the hex SHA-256 of the audit public key (its DER
	// SubjectPublicKeyInfo), to tell keys apart after a key change.
	Key string `json:"key_sha256"`
	// Signature is the base64 RS256 signature over message().
	Signature string `json:"signature"`
}

// sealVersion starts the signed message, so that a signature made for
// anything else can never pass for a checkpoint's.
const sealVersion = "portvakt-audit-checkpoint-v1"

// message is what the audit key signs: every field but the signature, and
// the checkpoint's time.
func (s *Seal) message(at time.Time) []byte {
	return []byte(sealVersion + "\n" + s.Instance + "\n" + strconv.FormatUint(s.From, 10) + "\n" +
		strconv.FormatUint(s.HeadSeq, 10) + "\n" + s.HeadHash + "\n" + s.Key + "\n" + at.UTC().Format(time.RFC3339Nano) + "\n")
}

// KeyFingerprint is the hex SHA-256 of a public key's DER
// SubjectPublicKeyInfo: how checkpoints and `portvakt audit` name it.
func KeyFingerprint(public crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(public)
	if err != nil {
		return "", fmt.Errorf("encoding the audit public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// sign fills in the signature with key, which must be an RSA key.
func (s *Seal) sign(key crypto.Signer, at time.Time) error {
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		return fmt.Errorf("the audit key is a %T; checkpoints are signed with an RSA key", key.Public())
	}
	fp, err := KeyFingerprint(key.Public())
	if err != nil {
		return err
	}
	s.Key = fp
	digest := sha256.Sum256(s.message(at))
	sig, err := key.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing the audit checkpoint in the HSM: %w", err)
	}
	s.Signature = base64.StdEncoding.EncodeToString(sig)
	return nil
}

// errBadSeal is wrapped by the errors of verify.
var errBadSeal = errors.New("the checkpoint's signature does not verify")

// verify checks the signature against the audit public key.
func (s *Seal) verify(public *rsa.PublicKey, fingerprint string, at time.Time) error {
	if s.Key != fingerprint {
		return fmt.Errorf("%w: it names audit key %s, not the one given (%s)", errBadSeal, short(s.Key), short(fingerprint))
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil {
		return fmt.Errorf("%w: the signature is not base64", errBadSeal)
	}
	digest := sha256.Sum256(s.message(at))
	if err := rsa.VerifyPKCS1v15(public, crypto.SHA256, digest[:], sig); err != nil {
		return errBadSeal
	}
	return nil
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12] + "…"
	}
	return hash
}
