package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/portvakt/portvakt/audit"
)

// tiny is a configuration that runs in seconds; its figures mean nothing.
func tiny() options {
	o := defaultOptions()
	o.round, o.rounds = 200*time.Millisecond, 2
	o.callers, o.coldKeys, o.coldCallers, o.identical = 4, 20, 5, 5
	o.rssCallers, o.rssConns = 20, 4
	o.rsaBits = 2048 // quicker to generate; the default is the 3072
	o.keep = true    // the test reads the audit afterwards
	return o
}

// TestHarness runs the harness in a tiny configuration against the real
// daemon, SoftHSM2 and the simulator, and checks that the table has
// every row with a value, that the identical cold callers cost exactly
// one signature and one token request, and that the audit the daemon
// wrote under the load verifies. Nothing about time is asserted.
func TestHarness(t *testing.T) {
	var out, progress bytes.Buffer
	res, err := run(t.Context(), tiny(), &out, &progress)
	if res != nil {
		t.Cleanup(func() { os.RemoveAll(res.stateDir) })
	}
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("\n%s", out.String())

	o := tiny()
	rows := []string{
		fmt.Sprintf(rowThroughput, "unix"), fmt.Sprintf(rowP99, "unix"),
		fmt.Sprintf(rowThroughput, "mtls"), fmt.Sprintf(rowP99, "mtls"),
		fmt.Sprintf(rowCPU, "unix"), fmt.Sprintf(rowCPU, "mtls"),
		rowCold, rowColdCeil, rowSigns, rowPosts, rowRSS, rowAuditBytes, rowAuditRecs,
		"no-op (Health/Check), unix", "GetToken cached, unix", "no-op (Health/Check), mtls", "GetToken cached, mtls",
		"GetToken cold, unix", "bare signer.Sign", "machine: ",
		fmt.Sprintf(rowFloor, "unix"), fmt.Sprintf(rowFloorP99, "unix"), fmt.Sprintf(rowFloorShare, "unix"),
		fmt.Sprintf(rowFloor, "mtls"), fmt.Sprintf(rowFloorP99, "mtls"), fmt.Sprintf(rowFloorShare, "mtls"),
		rowFloorRSS, "floor: no-op, unix", "floor: GetToken's first reply, mtls",
	}
	for _, row := range rows {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(row) + `.*\S`).Match(out.Bytes()) {
			t.Errorf("no row %q in the table", row)
		}
	}
	// Every ratio is a number: no NaN or Inf from a round that measured nothing.
	if ratios := regexp.MustCompile(`\d+\.\d\d×`).FindAll(out.Bytes(), -1); len(ratios) != 14 {
		t.Errorf("%d ratios in the table, want 14", len(ratios))
	}

	if res.identicalSigns != 1 || res.identicalPosts != 1 {
		t.Errorf("%d identical cold callers made %d HSM signatures and %d token requests, want 1 and 1", o.identical, res.identicalSigns, res.identicalPosts)
	}
	for _, tr := range []string{"unix", "mtls"} {
		if len(res.noop[tr]) != o.rounds || len(res.get[tr]) != o.rounds {
			t.Errorf("%s: %d no-op and %d GetToken rounds, want %d of each", tr, len(res.noop[tr]), len(res.get[tr]), o.rounds)
		}
	}
	for i, r := range res.cold {
		if r.calls != o.coldKeys || res.bare[i].calls != o.coldKeys {
			t.Errorf("cold round %d: %d tokens and %d bare signatures, want %d of each", i+1, r.calls, res.bare[i].calls, o.coldKeys)
		}
	}
	if res.peakRSS <= 0 || res.auditBytesPerCall <= 0 || res.auditRecordsPerCall <= 0 {
		t.Errorf("peak RSS %d B, %.1f audit bytes and %.2f records per cached call: each must be measured", res.peakRSS, res.auditBytesPerCall, res.auditRecordsPerCall)
	}

	// The floor's GetToken is answered without the service: its cached
	// rounds put nothing on record, where the daemon's put a record a call.
	if f := res.floor; f == nil || f.peakRSS <= 0 || f.auditRecordsPerCall != 0 || len(f.get["mtls"]) != o.rounds {
		t.Errorf("the framework's floor was not measured as a GetToken that skips the service: %+v", f)
	}

	files, err := filepath.Glob(filepath.Join(res.stateDir, "audit", "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no audit files: %v", err)
	}
	if _, err := audit.Verify(files...); err != nil {
		t.Errorf("the audit written under the benchmark's load does not verify: %v", err)
	}
}
