// Command portvakt holds the enterprise certificate's key in an HSM and
// serves Maskinporten tokens signed with it. This file wires the
// subcommands; each lives in its own file.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/internal/buildinfo"
)

func main() {
	err := newRootCommand().Execute()
	os.Exit(report(os.Stderr, err)) // exitcode.go: what is printed, and the status
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "portvakt",
		Short: "Maskinporten tokens signed by a key that never leaves the HSM",
		Long: `Maskinporten tokens signed by a key that never leaves the HSM.

Commands that print a result take --json (one JSON document on standard
output; see docs/cli.md). ` + "`portvakt completion bash|zsh|fish`" + ` prints a
shell completion script.

Exit status:
` + exitStatusHelp(),
		// Errors are printed once, by main, without the usage text that
		// would bury them.
		SilenceErrors: true,
		SilenceUsage:  true,
		// --version prints what `portvakt version` prints.
		Version: buildinfo.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCommand(), newTokenCommand(), newKeysCommand(), newPolicyCommand(), newAuditCommand(), newHSMCommand(), newDevCACommand(), newVersionCommand())
	refuseUnknownCommands(root)
	return root
}

// refuseUnknownCommands makes a command group given a command it does not
// have a usage error (exit status 2), as a misspelt flag is; cobra says so
// only at the root, with exit status 1, and shows help elsewhere.
func refuseUnknownCommands(c *cobra.Command) {
	if !c.HasSubCommands() {
		return
	}
	if c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, ", "))
			}
			return usagef("unknown command %q for %q%s: see `%s --help`", args[0], cmd.CommandPath(), hint, cmd.CommandPath())
		}
	}
	for _, sub := range c.Commands() {
		refuseUnknownCommands(sub)
	}
}
