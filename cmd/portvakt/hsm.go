package main

import (
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/eseal"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/internal/p11"
	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/secret"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/softhsm"
)

func newHSMCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Manage the key's life on a PKCS#11 token (SoftHSM2 by default)",
		Long: `Manage the enterprise certificate's key on a PKCS#11 token.

The usual order: init (SoftHSM2 only) or use an initialised HSM token,
keygen, csr, send the request to the CA, import-cert. Or import-p12 to move
an existing .p12 into the token. The PIN is read from a file (--pin-file) or
an environment variable (--pin-env, default PORTVAKT_PIN), never a flag value.`,
	}
	cmd.AddCommand(newHSMInitCommand(), newHSMKeygenCommand(), newHSMCSRCommand(),
		newHSMImportCertCommand(), newHSMImportP12Command(), newHSMListCommand(), newHSMCheckCommand())
	return cmd
}

func newHSMInitCommand() *cobra.Command {
	var (
		tf         tokenFlags
		soPIN      secret.Source
		createPINs bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create and initialise a token (a SoftHSM2 token in its own directory by default)",
		Example: `  portvakt hsm init --softhsm-dir ./hsm --token portvakt \
    --pin-file ./hsm/user.pin --so-pin-file ./hsm/so.pin --create-pins`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if tf.label == "" {
				return usageError{fmt.Errorf("--token is required")}
			}
			if tf.module == "" && tf.softhsmDir == "" {
				return usageError{fmt.Errorf("give --softhsm-dir DIR for a SoftHSM2 token of its own, or --module for another HSM")}
			}
			var dir softhsm.Dir
			if tf.softhsmDir != "" {
				if dir, err = softhsm.Prepare(tf.softhsmDir); err != nil {
					return err
				}
			}
			module, err := tf.modulePath()
			if err != nil {
				return err
			}
			userPIN, so, err := initPINs(tf.pin, soPIN, createPINs)
			if err != nil {
				return err
			}
			if err := hsm.InitToken(module, tf.label, so, userPIN); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "initialised token %q with module %s\n", tf.label, module)
			if dir != "" {
				fmt.Fprintf(out, "its files are in %s; give --softhsm-dir %s to the other commands,\nor export SOFTHSM2_CONF=%s\n",
					dir.TokenDir(), dir, dir.ConfigFile())
			}
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&soPIN.File, "so-pin-file", "", "file holding the security officer PIN")
	cmd.Flags().StringVar(&soPIN.Env, "so-pin-env", "", "environment variable holding the security officer PIN")
	cmd.Flags().BoolVar(&createPINs, "create-pins", false, "generate random PINs into --pin-file and --so-pin-file (mode 0600; existing files are never overwritten)")
	return cmd
}

func initPINs(user, so secret.Source, create bool) (secret.Value, secret.Value, error) {
	if create {
		if user.File == "" || so.File == "" || user.Env != "" || so.Env != "" {
			return secret.Value{}, secret.Value{}, usageError{fmt.Errorf("--create-pins writes the PINs to --pin-file and --so-pin-file: give both files, and no --pin-env")}
		}
		userPIN, err := secret.Generate(user.File)
		if err != nil {
			return secret.Value{}, secret.Value{}, err
		}
		soPIN, err := secret.Generate(so.File)
		if err != nil {
			_ = os.Remove(user.File) // keep no PIN of a token that was never made
			return secret.Value{}, secret.Value{}, err
		}
		return userPIN, soPIN, nil
	}
	if so.IsZero() {
		return secret.Value{}, secret.Value{}, usageError{fmt.Errorf("give the security officer PIN with --so-pin-file or --so-pin-env, or --create-pins")}
	}
	userPIN, err := loadPIN(user, "--pin-file", "--pin-env")
	if err != nil {
		return secret.Value{}, secret.Value{}, err
	}
	soPIN, err := so.Load()
	if err != nil {
		return secret.Value{}, secret.Value{}, fmt.Errorf("security officer PIN: %w", err)
	}
	return userPIN, soPIN, nil
}

func newHSMKeygenCommand() *cobra.Command {
	var (
		tf     tokenFlags
		kf     keyFlags
		bits   int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "keygen",
		Short:   "Generate an RSA key pair inside the token (sensitive, never extractable, sign only)",
		Example: `  portvakt hsm keygen --softhsm-dir ./hsm --token portvakt --pin-file ./hsm/user.pin --label eseal`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := keySizes.check(strconv.Itoa(bits)); err != nil {
				return err
			}
			tok, err := tf.token()
			if err != nil {
				return err
			}
			if kf.label == "" {
				return usageError{fmt.Errorf("--label is required: the daemon's configuration finds the key by it")}
			}
			id, err := parseKeyID(kf.id)
			if err != nil {
				return err
			}
			key, err := hsm.GenerateKey(tok, hsm.KeySpec{Label: kf.label, ID: id, Bits: bits})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Token string  `json:"token"`
					Key   keyJSON `json:"key"`
				}{tok.Label, keyJSONOf(key)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "generated %d-bit RSA key label %q id %x on token %q (%s)\n",
				key.Public.N.BitLen(), key.Label, key.ID, tok.Label, keyAccess(key))
			return nil
		},
	}
	tf.register(cmd)
	kf.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the key made as JSON")
	cmd.Flags().IntVar(&bits, "bits", hsm.DefaultKeyBits, "RSA key size: "+strings.Join(keySizes.values, " or "))
	keySizes.complete(cmd)
	return cmd
}

func newHSMCSRCommand() *cobra.Command {
	var (
		tf      tokenFlags
		kf      keyFlags
		subject eseal.Subject
		number  string
		out     string
	)
	cmd := &cobra.Command{
		Use:   "csr",
		Short: "Write a PKCS#10 request, signed by the HSM key, to order a virksomhetssertifikat",
		Example: `  portvakt hsm csr --softhsm-dir ./hsm --token portvakt --pin-file ./hsm/user.pin \
    --label eseal --org-number 991825827 --organization "Example AS" --out eseal.csr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := orgno.Parse(number)
			if err != nil {
				return usageError{fmt.Errorf("--org-number: %w", err)}
			}
			subject.OrgNumber = n
			if err := subject.Validate(); err != nil {
				return usageError{err}
			}
			sel, err := kf.selector()
			if err != nil {
				return err
			}
			tok, err := tf.token()
			if err != nil {
				return err
			}
			der, err := hsm.CreateCSR(tok, sel, subject.Name())
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
		},
	}
	tf.register(cmd)
	kf.register(cmd.Flags())
	cmd.Flags().StringVar(&number, "org-number", "", "the enterprise's organisation number (nine digits)")
	cmd.Flags().StringVar(&subject.Organization, "organization", "", "the enterprise's registered name (O)")
	cmd.Flags().StringVar(&subject.CommonName, "cn", "", "common name (default: the organisation name)")
	cmd.Flags().StringVar(&out, "out", "-", "where to write the PEM request (- for standard output)")
	return cmd
}

func newHSMImportCertCommand() *cobra.Command {
	var (
		tf     tokenFlags
		kf     keyFlags
		file   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "import-cert",
		Short:   "Store the issued certificate and its chain beside the key",
		Example: `  portvakt hsm import-cert --softhsm-dir ./hsm --token portvakt --pin-file ./hsm/user.pin --label eseal --cert eseal-chain.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{fmt.Errorf("--cert FILE is required (PEM: the certificate first, then its chain)")}
			}
			sel, err := kf.selector()
			if err != nil {
				return err
			}
			chain, err := signer.ReadPEMChain(file)
			if err != nil {
				return err
			}
			tok, err := tf.token()
			if err != nil {
				return err
			}
			res, err := hsm.ImportCertificates(tok, sel, chain, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Token              string  `json:"token"`
					Key                keyJSON `json:"key"`
					CertificatesStored int     `json:"certificates_stored"`
					AlreadyOnToken     int     `json:"already_on_token"`
				}{tok.Label, keyJSONOf(res.Key), res.CertificatesStored, res.Skipped})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored %d certificates for key %q (%d were already on the token)\n",
				res.CertificatesStored, res.Key.Label, res.Skipped)
			return nil
		},
	}
	tf.register(cmd)
	kf.register(cmd.Flags())
	cmd.Flags().StringVar(&file, "cert", "", "PEM file: the key's certificate first, then its chain")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was stored as JSON")
	return cmd
}

func newHSMImportP12Command() *cobra.Command {
	var (
		tf       tokenFlags
		kf       keyFlags
		file     string
		password secret.Source
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "import-p12",
		Short: "Move the key and certificates of a .p12 file into the token as a non-extractable key",
		Example: `  portvakt hsm import-p12 --softhsm-dir ./hsm --token portvakt --pin-file ./hsm/user.pin \
    --file eseal.p12 --password-file p12.pass --label eseal`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || kf.label == "" {
				return usageError{fmt.Errorf("--file and --label are required")}
			}
			if password.IsZero() {
				return usageError{fmt.Errorf("give the .p12 password with --password-file or --password-env")}
			}
			id, err := parseKeyID(kf.id)
			if err != nil {
				return err
			}
			pass, err := password.Load()
			if err != nil {
				return fmt.Errorf(".p12 password: %w", err)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			tok, err := tf.token()
			if err != nil {
				return err
			}
			res, err := hsm.ImportPKCS12(tok, data, pass, hsm.KeySpec{Label: kf.label, ID: id})
			if err != nil {
				return fmt.Errorf("%s: %w (the token is unchanged)", file, err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Token              string  `json:"token"`
					Key                keyJSON `json:"key"`
					CertificatesStored int     `json:"certificates_stored"`
				}{tok.Label, keyJSONOf(res.Key), res.CertificatesStored})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported key label %q id %x (%s) and %d certificates\n%s still holds the key in software: keep it offline as a backup, or destroy it\n",
				res.Key.Label, res.Key.ID, keyAccess(res.Key), res.CertificatesStored, file)
			return nil
		},
	}
	tf.register(cmd)
	kf.register(cmd.Flags())
	cmd.Flags().StringVar(&file, "file", "", "the .p12 / .pfx file")
	cmd.Flags().StringVar(&password.File, "password-file", "", "file holding the .p12 password")
	cmd.Flags().StringVar(&password.Env, "password-env", "", "environment variable holding the .p12 password")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was imported as JSON")
	return cmd
}

func newHSMListCommand() *cobra.Command {
	var (
		tf     tokenFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the token's keys and certificates",
		Example: `  portvakt hsm list --softhsm-dir ./hsm --token portvakt --pin-file ./hsm/user.pin`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := tf.token()
			if err != nil {
				return err
			}
			inv, err := hsm.List(tok)
			if err != nil {
				return err
			}
			if asJSON {
				return writeInventoryJSON(cmd.OutOrStdout(), inv)
			}
			writeInventory(cmd.OutOrStdout(), inv)
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the keys and certificates as JSON")
	return cmd
}

func keyAccess(k p11.KeyObject) string {
	s := fmt.Sprintf("sensitive=%v extractable=%v", k.Sensitive, k.Extractable)
	if k.NeverExtractable {
		s += " never-extractable"
	}
	if k.Local {
		s += " generated-on-token"
	}
	return s
}

func writeInventory(w io.Writer, inv hsm.Inventory) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY LABEL\tID\tBITS\tSENSITIVE\tEXTRACTABLE\tNEVER-EXTRACTABLE\tGENERATED-ON-TOKEN")
	for _, k := range inv.Keys {
		bits := 0
		if k.Public != nil {
			bits = k.Public.N.BitLen()
		}
		fmt.Fprintf(tw, "%s\t%x\t%d\t%v\t%v\t%v\t%v\n", k.Label, k.ID, bits, k.Sensitive, k.Extractable, k.NeverExtractable, k.Local)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CERTIFICATE LABEL\tFOR KEY\tORG NUMBER\tNOT AFTER\tSUBJECT\tSHA-256")
	for _, c := range inv.Certificates {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Label, orDash(c.ForKey), orDash(c.OrgNumber),
			c.NotAfter.UTC().Format(time.DateOnly), c.Subject, c.SHA256)
	}
	_ = tw.Flush()
}

// keyJSON is a key as every --json of the hsm commands shows it.
type keyJSON struct {
	Label            string `json:"label"`
	ID               string `json:"id"`
	Bits             int    `json:"bits"`
	Sensitive        bool   `json:"sensitive"`
	Extractable      bool   `json:"extractable"`
	AlwaysSensitive  bool   `json:"always_sensitive"`
	NeverExtractable bool   `json:"never_extractable"`
	Local            bool   `json:"generated_on_token"`
}

func keyJSONOf(k p11.KeyObject) keyJSON {
	bits := 0
	if k.Public != nil {
		bits = k.Public.N.BitLen()
	}
	return keyJSON{k.Label, hex.EncodeToString(k.ID), bits, k.Sensitive, k.Extractable, k.AlwaysSensitive, k.NeverExtractable, k.Local}
}

func writeInventoryJSON(w io.Writer, inv hsm.Inventory) error {
	type cert struct {
		Label     string    `json:"label"`
		ID        string    `json:"id"`
		ForKey    string    `json:"for_key,omitempty"`
		Subject   string    `json:"subject"`
		OrgNumber string    `json:"org_number,omitempty"`
		NotAfter  time.Time `json:"not_after"`
		SHA256    string    `json:"sha256"`
	}
	out := struct {
		Keys         []keyJSON `json:"keys"`
		Certificates []cert    `json:"certificates"`
	}{Keys: []keyJSON{}, Certificates: []cert{}}
	for _, k := range inv.Keys {
		out.Keys = append(out.Keys, keyJSONOf(k))
	}
	for _, c := range inv.Certificates {
		out.Certificates = append(out.Certificates, cert{c.Label, hex.EncodeToString(c.ID), c.ForKey, c.Subject, c.OrgNumber, c.NotAfter, c.SHA256})
	}
	return writeJSON(w, out)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
