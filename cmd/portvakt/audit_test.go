package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/audit"
)

// runAudit executes `portvakt audit ARGS` in-process, under a root
// command set up as main's is.
func runAudit(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "portvakt", SilenceErrors: true, SilenceUsage: true}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newAuditCommand())
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"audit"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), err
}

// auditLog writes a log of a start record and three records of one
// request, and returns the active file.
func auditLog(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit", "audit.log")
	w, err := audit.Open(audit.Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	base := audit.Record{RequestID: "req-1", Transport: "unix", Identities: []string{"uid:1000"}, Client: "billing",
		Environment: "prod", Scopes: []string{"svv:kjoretoy/ecoc"}}
	for _, fill := range []func(r *audit.Record){
		func(r *audit.Record) { r.Kind, r.Decision, r.Rule = audit.KindDecision, "allow", "policy.yaml:7" },
		func(r *audit.Record) { r.Kind, r.GrantJTI, r.KeyLabel = audit.KindSignature, "jti-1", "eseal" },
		func(r *audit.Record) { r.Kind, r.Outcome, r.GrantJTI = audit.KindOutcome, "issued", "jti-1" },
	} {
		r := base
		fill(&r)
		if _, err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestAuditVerify(t *testing.T) {
	path := auditLog(t)
	dir := filepath.Dir(path)
	out, err := runAudit(t, "verify", dir)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^ok, 4 records \(seq 1-4, 1 file\), last hash ([0-9a-f]{64})\ncheckpoints not checked: give --public-key`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("verify printed %q", out)
	}
	lastHash := m[1]
	out, err = runAudit(t, "verify", path, "--expect-last-hash", strings.ToUpper(lastHash), "--expect-min-seq", "4")
	if err != nil || !strings.Contains(out, "still holds the record with hash "+lastHash) || !strings.Contains(out, "still reaches record 4") {
		t.Fatalf("verify against its anchors: %q, %v", out, err)
	}

	// The last record removed: the chain is still valid, the anchors fail.
	data, _ := os.ReadFile(path)
	ls := strings.SplitAfter(string(data), "\n")
	os.WriteFile(path, []byte(strings.Join(ls[:3], "")), 0o600)
	if _, err := runAudit(t, "verify", dir); err != nil {
		t.Fatalf("a log cut after a record verifies without an anchor, but: %v", err)
	}
	for _, anchor := range [][]string{{"--expect-min-seq", "4"}, {"--expect-last-hash", lastHash}} {
		_, err := runAudit(t, append([]string{"verify", dir}, anchor...)...)
		var usage usageError
		if err == nil || errors.As(err, &usage) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("verify %s of a cut log = %v, want a problem with the log", anchor, err)
		}
	}

	// An edited record.
	ls[1] = strings.Replace(ls[1], `"allow"`, `"deny"`, 1)
	os.WriteFile(path, []byte(strings.Join(ls, "")), 0o600)
	out, err = runAudit(t, "verify", dir)
	var usage usageError
	if want := path + ":2: record 2 was edited: its hash does not match its content"; err == nil || err.Error() != want || errors.As(err, &usage) || out != "" {
		t.Fatalf("verify of an edited log: %q, %v; want the error %q", out, err, want)
	}
}

func TestAuditQuery(t *testing.T) {
	path := auditLog(t)
	dir := filepath.Dir(path)
	out, err := runAudit(t, "query", dir, "--kind", "signature")
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "SEQ") || !regexp.MustCompile(`^3 +\S+Z +signature +req-1 +billing +prod +svv:kjoretoy/ecoc +- +jti-1$`).MatchString(rows[1]) {
		t.Fatalf("query --kind signature printed:\n%s", out)
	}
	out, err = runAudit(t, "query", dir, "--since", "24h", "--client", "billing", "--scope", "svv:kjoretoy/ecoc", "--env", "prod", "--request-id", "req-1", "--json")
	data, _ := os.ReadFile(path)
	if want := strings.Join(strings.SplitAfter(string(data), "\n")[1:], ""); err != nil || out != want {
		t.Fatalf("query --json printed:\n%s\n(%v), want the log's lines:\n%s", out, err, want)
	}
	if out, err := runAudit(t, "query", dir, "--until", "2000-01-01T00:00:00Z"); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("query of nothing printed %q, %v; want the header", out, err)
	}

	// --verify: nothing from a log that does not verify.
	os.WriteFile(path, bytes.Replace(data, []byte(`"eseal"`), []byte(`"other"`), 1), 0o600)
	if out, err := runAudit(t, "query", dir, "--json"); err != nil || !strings.Contains(out, `"other"`) {
		t.Fatalf("query without --verify: %q, %v; want the edited record as it reads", out, err)
	}
	if out, err := runAudit(t, "query", dir, "--verify", "--json"); err == nil || out != "" || !strings.Contains(err.Error(), "record 3 was edited") {
		t.Fatalf("query --verify of an edited log: %q, %v", out, err)
	}
}

func TestAuditUsageErrors(t *testing.T) {
	dir := filepath.Dir(auditLog(t))
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"verify"}, "give the audit log's files or its directory"},
		{[]string{"query"}, "give the audit log's files or its directory"},
		{[]string{"verify", dir, "--expect-last-hash", "abc"}, "64 hex digits"},
		{[]string{"verify", dir, "--expect-min-seq", "-1"}, "invalid argument"},
		{[]string{"query", dir, "--since", "yesterday"}, "RFC 3339"},
		{[]string{"query", dir, "--since", "-5m"}, "RFC 3339"},
		{[]string{"query", dir, "--since", "1h", "--until", "2h"}, "is not before --until"},
		{[]string{"query", dir, "--from-middle"}, "--from-middle goes with --verify"},
		{[]string{"query", dir, "--no-such-flag"}, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runAudit(t, tt.args...)
			var usage usageError
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v (usage error: %v), want a usage error saying %q", err, errors.As(err, &usage), tt.want)
			}
		})
	}
}

// TestAuditQueryShowsCountsAndCachedTokens: records written before the
// count field existed and records with it verify and list together; the
// table shows a cached token's decision and outcome, and how many calls a
// counted record stands for.
func TestAuditQueryShowsCountsAndCachedTokens(t *testing.T) {
	path := auditLog(t) // records without a count, as every older log
	w, err := audit.Open(audit.Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	base := audit.Record{Transport: "unix", Identities: []string{"uid:1000"}, Client: "billing", Environment: "prod", Scopes: []string{"svv:kjoretoy/ecoc"}}
	for _, fill := range []func(r *audit.Record){
		func(r *audit.Record) {
			r.Kind, r.RequestID, r.Decision, r.Outcome, r.GrantJTI = audit.KindDecision, "req-2", "allow", "cached", "jti-1"
		},
		func(r *audit.Record) { r.Kind, r.RequestID, r.Decision = audit.KindDecision, "req-3", "deny" },
		func(r *audit.Record) {
			r.Kind, r.RequestID, r.Decision, r.Count = audit.KindDecision, "req-40", "deny", 37
		},
		func(r *audit.Record) {
			r.Kind, r.RequestID, r.Outcome, r.Count, r.Scopes = audit.KindOutcome, "req-99", "rate_limited", 1, nil
		},
	} {
		r := base
		fill(&r)
		if _, err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()

	dir := filepath.Dir(path)
	if out, err := runAudit(t, "verify", dir); err != nil || !strings.HasPrefix(out, "ok, 9 records") {
		t.Fatalf("verify: %q, %v", out, err)
	}
	out, err := runAudit(t, "query", dir, "--verify", "--since", "1h")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^6 .* decision +req-2 +billing +prod +svv:kjoretoy/ecoc +allow cached +jti-1$`),
		regexp.MustCompile(`(?m)^7 .* decision +req-3 +billing +prod +svv:kjoretoy/ecoc +deny +-$`),
		regexp.MustCompile(`(?m)^8 .* decision +req-40 +billing +prod +svv:kjoretoy/ecoc +deny \(37 calls\) +-$`),
		regexp.MustCompile(`(?m)^9 .* outcome +req-99 +billing +prod +- +rate_limited \(1 call\) +-$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("query printed:\n%s\nwant a line matching %s", out, want)
		}
	}
	out, err = runAudit(t, "query", dir, "--request-id", "req-40", "--json")
	if err != nil || !strings.Contains(out, `"count":37,`) {
		t.Fatalf("query --json: %q, %v; want the line with its count", out, err)
	}
}
