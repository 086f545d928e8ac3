package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/internal/buildinfo"
)

// newVersionCommand prints what `portvakt --version` prints too.
func newVersionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the Go version this binary was built with",
		Long: `Print the version, the commit and the Go version this binary was built with,
as the daemon logs them at start and exports them in portvakt_build_info.

The version is the one ` + "`make build`" + ` stamps in (git describe); a plain
go build reports "dev", or the module version of go install ...@version.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := buildinfo.Get()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"version": bi.Version, "revision": bi.Revision, "go_version": bi.GoVersion})
			}
			_, err := fmt.Fprint(cmd.OutOrStdout(), bi)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print version, revision and go_version as JSON")
	return cmd
}
