package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	devel := func(settings []debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings}
	}
	for _, tt := range []struct {
		name              string
		version, revision string
		bi                *debug.BuildInfo
		want              Info
	}{
		{"ldflags win", "v1.2.3-4-gabc", "abc123", devel(vcs("fff", "true")), Info{"v1.2.3-4-gabc", "abc123", "go1.x"}},
		{"plain go build", "", "", devel(vcs("abc123", "false")), Info{"dev", "abc123", "go1.x"}},
		{"modified tree", "", "", devel(vcs("abc123", "true")), Info{"dev", "abc123-dirty", "go1.x"}},
		{"go install @version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, Info{"v1.4.0", "unknown", "go1.x"}},
		{"nothing recorded", "", "", devel(nil), Info{"dev", "unknown", "go1.x"}},
		{"no build info", "", "", nil, Info{"dev", "unknown", "go1.x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.version, tt.revision, tt.bi, "go1.x"); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestGet(t *testing.T) {
	got := Get()
	if got.GoVersion != runtime.Version() || got.Version == "" || got.Revision == "" {
		t.Fatalf("Get() = %+v", got)
	}
}
