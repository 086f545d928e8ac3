package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/audit"
)

// TestAuditVerifyGaps: a log whose daemon found its file changed under it
// verifies with the gap it recorded: verify prints the gap, what happened
// and what is lost, then GAPS instead of ok, and fails with the status 5
// error (not a problem, not a usage error).
func TestAuditVerifyGaps(t *testing.T) {
	tests := []struct {
		name   string
		change func(path string)
		gap    string // a pattern for the gap line
	}{
		{"deleted", func(path string) { os.Remove(path) },
			`:1: gap record 5 \(deleted, \S+\): the active file \S+ \(records 1-4, \d+ bytes\) was deleted while the daemon had it open; records 1-4 are lost`},
		{"replaced", func(path string) { os.WriteFile(path+".new", []byte("{}\n"), 0o600); os.Rename(path+".new", path) },
			`:1: gap record 5 \(replaced, \S+\): another file \(3 bytes\) took the place of the active file .*kept as audit.log.replaced.\d{8}T\d{6}Z; records 1-4 are lost`},
		{"truncated", func(path string) { os.Truncate(path, 10) },
			`:1: gap record 5 \(truncated, \S+\): the active file \S+ was truncated while the daemon had it open: it holds 10 of the \d+ bytes .*; records 1-4 are lost: .*line 1: the file ends in a truncated record`},
		{"appended", func(path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("x\n")
			f.Close()
		}, `:1: gap record 5 \(appended, \S+\): 2 bytes the daemon did not write were appended .*; no record is lost; the 2 bytes after the daemon's \d+ in audit.000000000001-000000000004.\S+.log are not its own, and were not read`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit", "audit.log")
			w, err := audit.Open(audit.Options{Path: path, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := w.Append(audit.Record{Kind: audit.KindDecision, Client: "billing", Decision: "allow"}); err != nil {
					t.Fatal(err)
				}
			}
			tt.change(path)
			if _, err := w.Append(audit.Record{Kind: audit.KindDecision}); !errors.Is(err, audit.ErrUnavailable) {
				t.Fatalf("Append after the file was changed = %v", err)
			}
			w.Close()

			out, err := runAudit(t, "verify", filepath.Dir(path))
			var usage usageError
			if !isGaps(err) || errors.As(err, &usage) {
				t.Fatalf("verify = %v, want the gaps verdict", err)
			}
			ls := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(ls) < 2 || !strings.HasPrefix(ls[0], path) || !regexp.MustCompile(tt.gap).MatchString(ls[0]) {
				t.Fatalf("verify printed:\n%s\nwant its first line to match %s", out, tt.gap)
			}
			if !regexp.MustCompile(`^GAPS: 1 gap in \d+ records? \(seq \d+-5, \d+ files?\), last hash [0-9a-f]{64}: the chain holds across them`).MatchString(ls[1]) {
				t.Errorf("verify's verdict: %q", ls[1])
			}
			// query reads past what the gap accounts for, as verify does.
			out, err = runAudit(t, "query", filepath.Dir(path), "--kind", "gap", "--verify")
			if err != nil || !regexp.MustCompile(`\n5 +\S+ +gap `).MatchString(out) {
				t.Errorf("query --kind gap --verify: %v\n%s", err, out)
			}
		})
	}
}
