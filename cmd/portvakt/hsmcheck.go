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
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Open the key as the daemon does, sign in the HSM and verify with the certificate",
		Long: `Open the key exactly as the daemon does (find it, load its certificate
chain from the token or --cert, check that the certificate is the key's),
then sign a random challenge with RS256, RS384 and RS512 inside the HSM and
verify each signature with the certificate's public key.`,
		Example: `  portvakt hsm check --softhsm-dir ./hsm --token portvakt --pin-file ./hsm/user.pin --label eseal`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openKey(cmd, &tf, &kf, signer.KeyConfig{CertificateFile: certFile})
			if err != nil {
				return err
			}
			defer s.Close()
			out := cmd.OutOrStdout()
			describeChain(out, s)
			return checkSignatures(out, s)
		},
	}
	tf.register(cmd)
	kf.register(cmd.Flags())
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain (default: the token's certificate objects)")
	return cmd
}

func describeChain(w io.Writer, s *signer.Signer) {
	cert := s.Certificate()
	sum := sha256.Sum256(cert.Raw)
	number := "none"
	if n, err := orgno.FromCertificate(cert); err == nil {
		number = n.String()
	}
	fmt.Fprintf(w, "key:          %d-bit RSA, matches its certificate\n", s.Public().(*rsa.PublicKey).N.BitLen())
	fmt.Fprintf(w, "certificate:  %s\n", eseal.Describe(cert.Subject))
	fmt.Fprintf(w, "org number:   %s\n", number)
	fmt.Fprintf(w, "valid:        %s to %s\n", cert.NotBefore.UTC().Format(time.DateOnly), cert.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(w, "sha-256:      %s\n", hex.EncodeToString(sum[:]))
	for i, c := range s.Chain()[1:] {
		fmt.Fprintf(w, "issuer %d:     %s\n", i+1, eseal.Describe(c.Subject))
	}
}

func checkSignatures(w io.Writer, s *signer.Signer) error {
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
			return fmt.Errorf("%s: %w", alg.name, err)
		}
		if err := rsa.VerifyPKCS1v15(s.Certificate().PublicKey.(*rsa.PublicKey), alg.hash, digest, sig); err != nil {
			return fmt.Errorf("%s: the HSM's signature does not verify with the certificate: %w", alg.name, err)
		}
		fmt.Fprintf(w, "%s:        signed in the HSM, verified with the certificate\n", alg.name)
	}
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
