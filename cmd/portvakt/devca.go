package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/devca"
)

func newDevCACommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "devca",
		Short: "A development CA that issues eSeal-like certificates (never for production)",
		Long: `A development certificate authority: a root and an issuing CA that issue
eSeal-like certificates with the organisation number in the subject, as
Buypass and Commfides do. For development, the demo and tests only: the
local Maskinporten simulator trusts it; the real Maskinporten does not.`,
	}
	cmd.AddCommand(newDevCAInitCommand(), newDevCAIssueCommand())
	return cmd
}

func newDevCAInitCommand() *cobra.Command {
	var dir, name string
	cmd := &cobra.Command{
		Use:     "init",
		Short:   "Create a development root and issuing CA in a directory",
		Example: `  portvakt devca init --dir ./devca`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{fmt.Errorf("--dir is required")}
			}
			if strings.TrimSpace(name) == "" {
				return usagef("--name: give the CA a name")
			}
			ca, err := devca.New(name)
			if err != nil {
				return err
			}
			if err := ca.Save(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "development CA %q written to %s (trust %s/%s)\n", name, dir, dir, devca.RootCertFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the CA's certificates and keys")
	cmd.Flags().StringVar(&name, "name", "Portvakt Development", "the CA's name")
	return cmd
}

// maxDevCADays bounds what the development CA issues: ten years, more
// than any test or demo needs, and a typo (3650000) is caught.
const maxDevCADays = 3650

func newDevCAIssueCommand() *cobra.Command {
	var (
		dir, csrFile, out string
		days              int
	)
	cmd := &cobra.Command{
		Use:     "issue",
		Short:   "Issue an eSeal-like certificate for a request made by `hsm csr`; writes the certificate and chain",
		Example: `  portvakt devca issue --dir ./devca --csr eseal.csr --out eseal-chain.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || csrFile == "" {
				return usageError{fmt.Errorf("--dir and --csr are required")}
			}
			if days <= 0 || days > maxDevCADays {
				return usagef("--days %d: give a validity of 1 to %d days", days, maxDevCADays)
			}
			ca, err := devca.Load(dir)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(csrFile)
			if err != nil {
				return err
			}
			block, _ := pem.Decode(data)
			if block == nil || block.Type != "CERTIFICATE REQUEST" {
				return fmt.Errorf("%s is not a PEM CERTIFICATE REQUEST", csrFile)
			}
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				return fmt.Errorf("%s: %w", csrFile, err)
			}
			cert, err := ca.IssueFromCSR(csr, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			var chain []byte
			for _, c := range append([]*x509.Certificate{cert}, ca.Chain()...) {
				chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
			}
			return writeOutput(cmd.OutOrStdout(), out, chain, 0o644)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the CA directory made by devca init")
	cmd.Flags().StringVar(&csrFile, "csr", "", "PEM certificate request")
	cmd.Flags().StringVar(&out, "out", "-", "where to write the PEM certificate and chain (- for standard output)")
	cmd.Flags().IntVar(&days, "days", 365, "validity in days")
	return cmd
}
