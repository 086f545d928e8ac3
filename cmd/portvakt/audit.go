package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/internal/duration"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and search the audit log of decisions and key uses",
		Long: `The daemon records every policy decision, every signature by the HSM key
and every outcome in the audit log: JSON lines, each holding the SHA-256 of
the one before it. verify checks that chain; query searches the records.

Give the log's files (the active file and its rotated files, in any order)
or its directory, which stands for all of them.`,
	}
	cmd.AddCommand(newAuditVerifyCommand(), newAuditQueryCommand(), newAuditPublicKeyCommand())
	return cmd
}

// needLog is the Args check of the audit commands.
func needLog(use string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageError{fmt.Errorf("give the audit log's files or its directory: portvakt audit %s", use)}
		}
		return nil
	}
}

func newAuditVerifyCommand() *cobra.Command {
	var (
		opts       audit.VerifyOptions
		expectHash string
		publicKey  string
		head       tokenFlags
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "verify FILE|DIR...",
		Short: "Check the audit log's hash chain: nothing edited, deleted, reordered or cut",
		Long: `Check the audit log's hash chain. A good log prints
  ok, N records (seq A-B, F files), last hash H
and exits 0. Otherwise the first problem is printed as FILE:LINE: what is
wrong, and the exit status is 1 (2 for a mistake in the command line).

A log whose daemon lost records (a write or fsync failed) or found its
file deleted, replaced, truncated or appended to by someone else holds a
gap record at the start of the file it opened then. verify prints each as
  FILE:1: gap record N (CAUSE, TIME): what happened; what is lost
checks the chain across it, then prints GAPS: ... instead of ok, and
exits 5.

Records deleted from the end of the newest file leave a valid, shorter
chain, which cannot be told from the files alone. Keep the last seq and
hash that verify prints somewhere the daemon cannot write, and give them
back later: --expect-last-hash H fails when the record with hash H is no
longer in the log (the log may have grown since), --expect-min-seq N when
the log no longer reaches record N.

--json prints the verdict as one JSON document instead (see docs/cli.md),
with the same exit status.`,
		Example: `  portvakt audit verify /var/log/portvakt
  portvakt audit verify /var/log/portvakt --expect-last-hash 3a7bd3e2… --expect-min-seq 4211
  portvakt audit verify --from-middle /var/log/portvakt/audit.log`,
		Args: needLog("verify FILE|DIR..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			if expectHash != "" {
				expectHash = strings.ToLower(expectHash)
				if b, err := hex.DecodeString(expectHash); err != nil || len(b) != 32 {
					return usageError{fmt.Errorf("--expect-last-hash %q: give a hash as verify prints it, 64 hex digits", expectHash)}
				}
				opts.ExpectHash = expectHash
			}
			out := cmd.OutOrStdout()
			if asJSON {
				out = io.Discard // the reports say it all
			}
			var reports []*chainReport
			instances, groups, err := audit.GroupByInstance(args...)
			if err != nil || len(instances) <= 1 {
				// One chain (or files verify itself explains): as given.
				id := ""
				if len(instances) == 1 {
					id = instances[0]
				}
				rep := &chainReport{Instance: id}
				reports = append(reports, rep)
				err = verifyChain(out, opts, &head, publicKey, id, args, rep)
			} else {
				err = verifyInstances(out, opts, &head, publicKey, instances, groups, &reports)
			}
			if !asJSON {
				return err
			}
			doc := auditVerifyJSON{Verdict: verdictOf(err), Instances: []chainReport{}}
			for _, r := range reports {
				if r.Gaps == nil {
					r.Gaps = []gapJSON{}
				}
				doc.Instances = append(doc.Instances, *r)
			}
			if werr := writeJSON(cmd.OutOrStdout(), doc); werr != nil {
				return werr
			}
			if doc.Verdict == "failed" {
				return listedError{"the audit log failed verification (the problem is in the JSON above)", err}
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&opts.FromMiddle, "from-middle", false, "accept a log that starts after record 1 (older rotated files archived elsewhere)")
	fs.StringVar(&expectHash, "expect-last-hash", "", "a last `hash` printed by an earlier verify: the log must still hold that record")
	fs.Uint64Var(&opts.ExpectMinSeq, "expect-min-seq", 0, "a last `seq` printed by an earlier verify: the log must still reach it")
	head.register(cmd) // --token etc.: check the log against the head the HSM keeps
	fs.BoolVar(&asJSON, "json", false, "print the verdict as JSON")
	fs.StringVar(&publicKey, "public-key", "", "the audit key's public half (PEM, from portvakt audit public-key): check every checkpoint and report records no checkpoint seals (exit status 4)")
	return cmd
}

// verifyChain verifies one instance's chain and prints the verdict.
// It fills rep with what it finds.
func verifyChain(out io.Writer, opts audit.VerifyOptions, head *tokenFlags, publicKey, instance string, paths []string, rep *chainReport) (err error) {
	defer func() { rep.finish(err) }()
	res, err := audit.VerifyWith(opts, paths...)
	if err != nil {
		return err
	}
	rep.setResult(res)
	for _, g := range res.Gaps {
		fmt.Fprintln(out, g) // FILE:1: what happened, and what is lost
	}
	switch {
	case len(res.Gaps) > 0:
		fmt.Fprintf(out, "GAPS: %s in %s (seq %d-%d, %s), last hash %s: the chain holds across them, but records may be lost; each gap is above\n",
			plural(len(res.Gaps), "gap"), plural(res.Records, "record"), res.FirstSeq, res.LastSeq, plural(res.Files, "file"), res.LastHash)
	case res.Records == 0:
		fmt.Fprintf(out, "ok, 0 records (%s)\n", plural(res.Files, "file"))
	default:
		fmt.Fprintf(out, "ok, %s (seq %d-%d, %s), last hash %s\n",
			plural(res.Records, "record"), res.FirstSeq, res.LastSeq, plural(res.Files, "file"), res.LastHash)
	}
	err = verifyMore(out, opts, head, publicKey, instance, paths, rep)
	// A gap outweighs an unsealed tail, not a problem found further on.
	if len(res.Gaps) > 0 && (err == nil || isUnsealed(err)) {
		return gapsFound{len(res.Gaps)}
	}
	return err
}

// verifyInstances verifies several replicas' chains, each on its own
// (the anchors given apply to each), and prints each verdict under
// "instance NAME:". It fails when any chain fails: with the gravest of
// their errors (a problem before gaps before an unsealed tail), having
// printed every one.
func verifyInstances(out io.Writer, opts audit.VerifyOptions, head *tokenFlags, publicKey string, instances []string, groups map[string][]string, reports *[]*chainReport) error {
	var worst error
	rank := func(err error) int {
		switch {
		case err == nil:
			return 0
		case isUnsealed(err):
			return 1
		case isGaps(err):
			return 2
		}
		return 3
	}
	failed := 0
	for _, id := range instances {
		name := id
		if name == "" {
			name = "(none: records without an instance id)"
		}
		fmt.Fprintf(out, "instance %s: %s\n", name, plural(len(groups[id]), "file"))
		rep := &chainReport{Instance: id}
		*reports = append(*reports, rep)
		err := verifyChain(out, opts, head, publicKey, id, groups[id], rep)
		if err != nil {
			failed++
			if !isUnsealed(err) && !isGaps(err) {
				fmt.Fprintf(out, "FAILED: %v\n", err)
			}
		}
		if rank(err) > rank(worst) {
			worst = err
		}
	}
	if failed == 0 {
		fmt.Fprintf(out, "ok: %s verified\n", plural(len(instances), "instance"))
	} else {
		fmt.Fprintf(out, "%d of %s failed\n", failed, plural(len(instances), "instance"))
	}
	return worst
}

// gapsFound is verify's verdict on a log whose chain holds but which has
// gap records: the daemon lost records, or found its file changed by
// someone else, and said so. main exits 5; the gaps are printed already.
type gapsFound struct{ n int }

func (g gapsFound) Error() string {
	return fmt.Sprintf("the audit log has %s (printed above): records may be lost", plural(g.n, "gap"))
}

func isGaps(err error) bool {
	var g gapsFound
	return errors.As(err, &g)
}

// verifyMore is what verify checks after the chain: the anchors given, the
// HSM's head, the checkpoints.
func verifyMore(out io.Writer, opts audit.VerifyOptions, head *tokenFlags, publicKey, instance string, args []string, rep *chainReport) error {
	if opts.ExpectHash != "" {
		fmt.Fprintf(out, "the log still holds the record with hash %s\n", opts.ExpectHash)
		rep.ExpectLastHash = opts.ExpectHash
	}
	if opts.ExpectMinSeq > 0 {
		fmt.Fprintf(out, "the log still reaches record %d\n", opts.ExpectMinSeq)
		rep.ExpectMinSeq = opts.ExpectMinSeq
	}
	if head.label != "" {
		if err := reportHead(out, head, publicKey, instance, args, rep); err != nil {
			return err
		}
	}
	if publicKey == "" {
		fmt.Fprintln(out, "checkpoints not checked: give --public-key (from `portvakt audit public-key`) to know which records the daemon sealed")
		return nil
	}
	return reportSeals(out, publicKey, args, rep)
}

func newAuditQueryCommand() *cobra.Command {
	var (
		f            audit.Filter
		since, until string
		asJSON       bool
		verify       bool
		fromMiddle   bool
	)
	cmd := &cobra.Command{
		Use:   "query FILE|DIR...",
		Short: "Search the audit log: who used the key, when, and for what",
		Long: `List the records that match every filter given, oldest first, as a table
or, with --json, as the log's own lines (which can still be checked
against their hashes).

--since and --until take a time in RFC 3339 (2026-11-24T15:04:05Z) or a
duration before now (30m, 24h, 7d). --since is inclusive, --until not.

A token answered from the cache is one decision record with its outcome
(RESULT "allow cached"). Calls refused again and again (the same denial, a
caller over its rate limit) are counted, one record a second: RESULT gives
the number of calls such a record stands for, as in "deny (37 calls)".

query reads what the records say without checking their hashes, so that a
damaged log can still be searched. --verify checks the whole chain first
and prints nothing unless it holds.`,
		Example: `  portvakt audit query /var/log/portvakt --since 24h --kind signature
  portvakt audit query /var/log/portvakt --client billing --env prod --scope svv:kjoretoy/ecoc --verify
  portvakt audit query /var/log/portvakt --jti 7f0c2a… --json`,
		Args: needLog("query FILE|DIR..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := auditKinds.check(f.Kind); err != nil {
				return err
			}
			now := time.Now()
			var err error
			if f.Since, err = parseWhen("--since", since, now); err != nil {
				return err
			}
			if f.Until, err = parseWhen("--until", until, now); err != nil {
				return err
			}
			if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
				return usageError{fmt.Errorf("--since %s is not before --until %s", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))}
			}
			if fromMiddle && !verify {
				return usageError{fmt.Errorf("--from-middle goes with --verify")}
			}
			// Expanded once, so that verify and query read the same files;
			// several replicas' logs are read chain by chain.
			instances, groups, err := audit.GroupByInstance(args...)
			if err != nil || len(instances) <= 1 {
				files, err := audit.Expand(args...)
				if err != nil {
					return err
				}
				instances, groups = []string{""}, map[string][]string{"": files}
			}
			out := cmd.OutOrStdout()
			var tw *tabwriter.Writer
			if !asJSON {
				tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, tableHeader(len(instances) > 1))
			}
			for _, id := range instances {
				files := groups[id]
				lastSeq := ^uint64(0)
				if verify {
					res, err := audit.VerifyWith(audit.VerifyOptions{FromMiddle: fromMiddle}, files...)
					if err != nil {
						if len(instances) > 1 {
							return fmt.Errorf("instance %s: %w", id, err)
						}
						return err
					}
					// Records appended since the check are not shown as checked.
					lastSeq = res.LastSeq
				}
				if asJSON {
					err = audit.Query(files, f, func(r audit.Record) error {
						if r.Seq > lastSeq {
							return nil
						}
						_, err := out.Write(r.Line())
						return err
					})
				} else {
					err = printTable(tw, files, f, lastSeq, len(instances) > 1)
				}
				if err != nil {
					return err
				}
			}
			if tw != nil {
				return tw.Flush()
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&since, "since", "", "records at or after this `time` (RFC 3339) or this long ago (24h, 7d)")
	fs.StringVar(&until, "until", "", "records before this `time` (RFC 3339) or this long ago")
	fs.StringVar(&f.Client, "client", "", "records of this policy client")
	fs.StringVar(&f.Scope, "scope", "", "records that name this scope")
	fs.StringVar(&f.Environment, "env", "", "records in this environment")
	fs.StringVar(&f.RequestID, "request-id", "", "records of this request")
	fs.StringVar(&f.Kind, "kind", "", "records of this kind: "+strings.Join(auditKinds.values, ", "))
	fs.StringVar(&f.GrantJTI, "jti", "", "records of the grant with this jti")
	fs.BoolVar(&asJSON, "json", false, "print the matching lines of the log as they are")
	fs.BoolVar(&verify, "verify", false, "verify the log first, and print nothing unless it holds")
	fs.BoolVar(&fromMiddle, "from-middle", false, "with --verify: accept a log that starts after record 1")
	auditKinds.complete(cmd)
	return cmd
}

// tableHeader is the table's first line; with several instances, each
// record's instance is in a first column.
func tableHeader(instances bool) string {
	h := "SEQ\tTIME\tKIND\tREQUEST\tCLIENT\tENV\tSCOPES\tRESULT\tJTI"
	if instances {
		h = "INSTANCE\t" + h
	}
	return h
}

func printTable(tw *tabwriter.Writer, files []string, f audit.Filter, lastSeq uint64, instances bool) error {
	return audit.Query(files, f, func(r audit.Record) error {
		if r.Seq > lastSeq {
			return nil
		}
		// A cached token's decision record has its outcome too.
		result := strings.Join(slices.DeleteFunc([]string{r.Decision, r.Outcome, r.MPCode}, func(s string) bool { return s == "" }), " ")
		if r.Count > 0 { // calls counted rather than recorded one by one
			result += " (" + plural(int(r.Count), "call") + ")"
		}
		if instances {
			if _, err := fmt.Fprintf(tw, "%s\t", dash(r.Instance)); err != nil {
				return err
			}
		}
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
			r.Kind, dash(r.RequestID), dash(r.Client), dash(r.Environment), dash(strings.Join(r.Scopes, ",")), dash(result), dash(r.GrantJTI))
		return err
	})
}

// parseWhen reads a time flag: RFC 3339, or a duration before now in the
// syntax the configuration takes too (30m, 24h, 7d).
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := duration.Parse(s)
	if err != nil || d <= 0 {
		return time.Time{}, usageError{fmt.Errorf("%s %q: give a time in RFC 3339 (2026-11-24T15:04:05Z) or how long ago (30m, 24h, 7d)", flag, s)}
	}
	return now.Add(-d), nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
