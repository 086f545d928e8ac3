package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/internal/buildinfo"
)

// newVersionCommand prints what `portvakt --version` prints too.
func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the Go version this binary was built with",
		Long: `Print the version, the commit and the Go version this binary was built with,
as the daemon logs them at start and exports them in portvakt_build_info.

The version is the one ` + "`make build`" + ` stamps in (git describe); a plain
go build reports "dev", or the module version of go install ...@version.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), buildinfo.Get())
			return err
		},
	}
}
