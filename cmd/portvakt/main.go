// Command portvakt holds the enterprise certificate's key in an HSM and
// serves Maskinporten tokens signed with it. This file wires the
// subcommands; each lives in its own file.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/internal/buildinfo"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		var deny denied
		if errors.As(err, &deny) {
			os.Exit(3) // `policy explain` has printed the DENY line
		}
		if isUnsealed(err) {
			os.Exit(4) // `audit verify` has printed the UNSEALED line
		}
		if isGaps(err) {
			os.Exit(5) // `audit verify` has printed the gaps and the GAPS line
		}
		var logged loggedError
		if errors.As(err, &logged) {
			os.Exit(1) // serve has written it to its JSON log
		}
		// One line, what went wrong and what to do: operators read this.
		fmt.Fprintln(os.Stderr, "portvakt:", err)
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "portvakt",
		Short: "Maskinporten tokens signed by a key that never leaves the HSM",
		// Errors are printed once, by main, without the usage text that
		// would bury them.
		SilenceErrors: true,
		SilenceUsage:  true,
		// --version prints what `portvakt version` prints.
		Version: buildinfo.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCommand(), newTokenCommand(), newPolicyCommand(), newAuditCommand(), newHSMCommand(), newDevCACommand(), newVersionCommand())
	return root
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
