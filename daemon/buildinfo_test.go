package daemon_test

import (
	"runtime"
	"testing"

	"github.com/portvakt/portvakt/internal/buildinfo"
	"github.com/portvakt/portvakt/internal/mptest"
)

// TestBuildInfoMetric: /metrics says which build runs, as `portvakt
// version` does.
func TestBuildInfoMetric(t *testing.T) {
	w := mptest.New(t, mptest.Options{NoSigner: true})
	e := startDaemon(t, w)
	bi := buildinfo.Get()
	labels := map[string]string{"version": bi.Version, "revision": bi.Revision, "goversion": runtime.Version()}
	got, ok := value(scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics"), "portvakt_build_info", labels)
	if !ok || got != 1 {
		t.Fatalf("portvakt_build_info%v = %v (exported: %v), want 1", labels, got, ok)
	}
}
