// Package buildinfo says which Portvakt this is: the version, the commit
// it was built from and the Go it was built with. `make build` sets the
// version and revision with -ldflags -X; a plain `go build` or `go
// install` falls back to what the Go toolchain recorded in the binary.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by the linker (see the Makefile's build target):
//
//	-X github.com/portvakt/portvakt/internal/buildinfo.version=v1.2.3
//	-X github.com/portvakt/portvakt/internal/buildinfo.revision=0123abc…
var (
	version  string
	revision string
)

// Info is what Get reports. No field is empty: what is not known is
// "dev" (the version) or "unknown" (the revision).
type Info struct {
	Version   string // a release tag, `git describe`, the module version, or "dev"
	Revision  string // the commit, with "-dirty" when built from a modified tree
	GoVersion string // runtime.Version()
}

// Get reports the build of the running binary.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, revision, bi, runtime.Version())
}

// resolve prefers what the linker set, then what the toolchain recorded.
func resolve(version, revision string, bi *debug.BuildInfo, goVersion string) Info {
	info := Info{Version: version, Revision: revision, GoVersion: goVersion}
	if bi != nil {
		if info.Version == "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version // `go install …@v1.2.3`
		}
		if info.Revision == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			info.Revision = rev
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String is the text `portvakt version` prints: one "key: value" line
// each, named as the labels of portvakt_build_info.
func (i Info) String() string {
	return fmt.Sprintf("version: %s\nrevision: %s\ngoversion: %s\n", i.Version, i.Revision, i.GoVersion)
}
