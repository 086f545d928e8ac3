package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/signer"
)

func newHSMCheckCommand() *cobra.Command {
	var (
		tf       tokenFlags
		kf       keyFlags
		certFile string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Open the key as the daemon does, sign in the HSM and verify with the certificate",
		Long: `Open the key exactly as the daemon does (find it, load its certificate
chain from the token or --cert, check that the certificate is the key's),
then sign a random challenge with RS256, RS384 and RS512 inside the HSM and
verify each signature with the certificate's public key. --json prints
the key, its certificate and the signatures checked as one JSON document.`,
		Example: `  portvakt hsm check --softhsm-dir ./hsm --token portvakt --pin-file ./hsm/user.pin --label eseal`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openKey(cmd, &tf, &kf, signer.KeyConfig{CertificateFile: certFile})
			if err != nil {
				return err
			}
			defer s.Close()
			res := describeKey(s)
			res.Token, res.Key.Label, res.Key.ID = tf.label, kf.label, strings.ToLower(kf.id)
			sigErr := checkSignatures(s, &res)
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, res); err != nil {
					return err
				}
			} else {
				res.print(out)
			}
			return sigErr
		},
	}
	tf.register(cmd)
	kf.register(cmd.Flags())
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain (default: the token's certificate objects)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// hsmCheck is what `hsm check` found; its JSON is what --json prints.
type hsmCheck struct {
	Token       string        `json:"token"`
	Key         hsmCheckKey   `json:"key"`
	Certificate hsmCheckCert  `json:"certificate"`
	Issuers     []string      `json:"issuers"`
	Signatures  []hsmCheckSig `json:"signatures"`
	OK          bool          `json:"ok"`
}

type hsmCheckKey struct {
	Label string `json:"label,omitempty"`
	ID    string `json:"id,omitempty"`
	Bits  int    `json:"bits"`
	// MatchesCertificate is always true: the key is not opened otherwise.
	MatchesCertificate bool `json:"matches_certificate"`
}

type hsmCheckCert struct {
	Subject   string    `json:"subject"`
	OrgNumber string    `json:"org_number,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	SHA256    string    `json:"sha256"`
}

type hsmCheckSig struct {
	Algorithm string `json:"algorithm"`
	Verified  bool   `json:"verified"`
	Error     string `json:"error,omitempty"`
}

func describeKey(s *signer.Signer) hsmCheck {
	cert := s.Certificate()
	sum := sha256.Sum256(cert.Raw)
	res := hsmCheck{
		Key: hsmCheckKey{Bits: s.Public().(*rsa.PublicKey).N.BitLen(), MatchesCertificate: true},
		Certificate: hsmCheckCert{Subject: eseal.Describe(cert.Subject), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(),
			SHA256: hex.EncodeToString(sum[:])},
		Issuers:    []string{},
		Signatures: []hsmCheckSig{},
	}
	if n, err := orgno.FromCertificate(cert); err == nil {
		res.Certificate.OrgNumber = n.String()
	}
	for _, c := range s.Chain()[1:] {
		res.Issuers = append(res.Issuers, eseal.Describe(c.Subject))
	}
	return res
}

func (res hsmCheck) print(w io.Writer) {
	number := res.Certificate.OrgNumber
	if number == "" {
		number = "none"
	}
	fmt.Fprintf(w, "key:          %d-bit RSA, matches its certificate\n", res.Key.Bits)
	fmt.Fprintf(w, "certificate:  %s\n", res.Certificate.Subject)
	fmt.Fprintf(w, "org number:   %s\n", number)
	fmt.Fprintf(w, "valid:        %s to %s\n", res.Certificate.NotBefore.Format(time.DateOnly), res.Certificate.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(w, "sha-256:      %s\n", res.Certificate.SHA256)
	for i, issuer := range res.Issuers {
		fmt.Fprintf(w, "issuer %d:     %s\n", i+1, issuer)
	}
	for _, sig := range res.Signatures {
		if sig.Verified {
			fmt.Fprintf(w, "%s:        signed in the HSM, verified with the certificate\n", sig.Algorithm)
		}
	}
}

// checkSignatures signs a random challenge with each algorithm in the HSM
// and verifies it, recording each in res; it stops at the first failure.
func checkSignatures(s *signer.Signer, res *hsmCheck) error {
	challenge := make([]byte, 32)
	if _, err := rand.Read(challenge); err != nil {
		return err
	}
	for _, alg := range []struct {
		name string
		hash crypto.Hash
	}{{"RS256", crypto.SHA256}, {"RS384", crypto.SHA384}, {"RS512", crypto.SHA512}} {
		h := alg.hash.New()
		h.Write(challenge)
		digest := h.Sum(nil)
		sig, err := s.Sign(nil, digest, alg.hash)
		if err != nil {
			err = fmt.Errorf("%s: %w", alg.name, err)
		} else if verr := rsa.VerifyPKCS1v15(s.Certificate().PublicKey.(*rsa.PublicKey), alg.hash, digest, sig); verr != nil {
			err = fmt.Errorf("%s: the HSM's signature does not verify with the certificate: %w", alg.name, verr)
		}
		if err != nil {
			res.Signatures = append(res.Signatures, hsmCheckSig{Algorithm: alg.name, Error: err.Error()})
			return err
		}
		res.Signatures = append(res.Signatures, hsmCheckSig{Algorithm: alg.name, Verified: true})
	}
	res.OK = true
	return nil
}

// openKey opens the key the flags select, as the daemon does; key adds
// what the flags do not say (a certificate file, or none at all).
func openKey(cmd *cobra.Command, tf *tokenFlags, kf *keyFlags, key signer.KeyConfig) (*signer.Signer, error) {
	sel, err := kf.selector()
	if err != nil {
		return nil, err
	}
	tok, err := tf.token()
	if err != nil {
		return nil, err
	}
	key.KeyLabel, key.KeyID = sel.Label, sel.ID
	return signer.Open(signer.Config{
		Token: signer.TokenConfig{
			Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN,
			Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
		},
		Key: key,
	})
}
