package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/signer"
)

// unsealed is returned by `audit verify --public-key` when the chain is
// intact but some records are sealed by no checkpoint (exit status 4).
type unsealed struct{ ranges string }

func (u unsealed) Error() string {
	return "records " + u.ranges + " are in the chain but sealed by no checkpoint"
}

func newAuditPublicKeyCommand() *cobra.Command {
	var (
		tf  tokenFlags
		kf  keyFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "public-key",
		Short: "Export the audit key's public half (PEM), for `audit verify --public-key`",
		Long: `Open the audit key in the HSM (a key of its own, made with
portvakt hsm keygen --label portvakt-audit; never the eSeal) and write its
public half as a PEM PUBLIC KEY, with its SHA-256 fingerprint, which the
checkpoints of the log name. Keep it where the daemon cannot write: it is
what tells the daemon's checkpoints from anyone else's.`,
		Example: `  portvakt audit public-key --module /path/to/pkcs11.so --token prod --label portvakt-audit --out audit-key.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kf.label == "" && kf.id == "" {
				kf.label = "portvakt-audit"
			}
			s, err := openKey(cmd, &tf, &kf, signer.KeyConfig{NoCertificate: true})
			if err != nil {
				return err
			}
			defer s.Close()
			der, err := x509.MarshalPKIXPublicKey(s.Public())
			if err != nil {
				return fmt.Errorf("encoding the audit public key: %w", err)
			}
			fingerprint, err := audit.KeyFingerprint(s.Public())
			if err != nil {
				return err
			}
			block := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			if out == "" {
				_, err = cmd.OutOrStdout().Write(block)
			} else {
				err = writeNew(out, block)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "audit key sha256 %s\n", fingerprint)
			return nil
		},
	}
	tf.register(cmd)
	kf.register(cmd.Flags())
	cmd.Flags().StringVar(&out, "out", "", "write the PEM to this file (default: standard output)")
	return cmd
}

// writeNew writes data to a new file, refusing to replace one.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("--out: %w", err)
	}
	return f.Close()
}

// readPublicKey reads a PEM PUBLIC KEY file.
func readPublicKey(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--public-key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("--public-key %s: not a PEM PUBLIC KEY (export it with `portvakt audit public-key`)", path)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("--public-key %s: %w", path, err)
	}
	return key, nil
}

// reportSeals checks the checkpoints and prints which records they seal.
func reportSeals(w io.Writer, keyFile string, paths []string, rep *chainReport) error {
	key, err := readPublicKey(keyFile)
	if err != nil {
		return err
	}
	report, err := audit.VerifySeals(key, paths...)
	if err != nil {
		return err
	}
	fingerprint, _ := audit.KeyFingerprint(key)
	rep.Seals = &sealsJSON{KeySHA256: fingerprint, Checkpoints: report.Checkpoints, Sealed: audit.Ranges(report.Sealed), Unsealed: audit.Ranges(report.Unsealed)}
	if report.Checkpoints == 0 {
		fmt.Fprintf(w, "no checkpoint of audit key sha256 %s: nothing is sealed\n", fingerprint)
	} else {
		fmt.Fprintf(w, "sealed: records %s, by %s of audit key sha256 %s\n", audit.Ranges(report.Sealed), plural(report.Checkpoints, "checkpoint"), fingerprint)
	}
	if len(report.Unsealed) > 0 {
		fmt.Fprintf(w, "UNSEALED: records %s: no checkpoint of the daemon that wrote them vouches for them "+
			"(the tail after the last checkpoint of a running daemon, the tail of a run that stopped without a clean shutdown, "+
			"or records someone else added)\n", audit.Ranges(report.Unsealed))
		return unsealed{audit.Ranges(report.Unsealed)}
	}
	return nil
}

func isUnsealed(err error) bool {
	var u unsealed
	return errors.As(err, &u)
}

// reportHead reads the log's head from the HSM and checks the log reaches
// it (and, with the public key, that the head is the audit key's).
// The head is instance's (see audit.HeadLabelOf).
func reportHead(w io.Writer, tf *tokenFlags, keyFile, instance string, paths []string, rep *chainReport) error {
	tok, err := tf.token()
	if err != nil {
		return err
	}
	values, err := hsm.ReadObjects(tok, audit.HeadLabelOf(instance))
	if err != nil {
		return fmt.Errorf("reading the audit head from the HSM: %w", err)
	}
	head, ok, err := audit.LatestHead(values)
	if err != nil {
		return err
	}
	if !ok {
		rep.HeadMissing = true
		fmt.Fprintf(w, "token %q holds no audit head %s: the daemon has written no checkpoint with it\n", tok.Label, audit.HeadLabelOf(instance))
		return nil
	}
	var key any
	if keyFile != "" {
		if key, err = readPublicKey(keyFile); err != nil {
			return err
		}
	}
	if err := audit.CheckHead(head, key, paths...); err != nil {
		return err
	}
	rep.Head = &head
	fmt.Fprintf(w, "the log reaches the HSM's head: %s\n", head)
	return nil
}
