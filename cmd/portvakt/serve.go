package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/buildinfo"
	"github.com/portvakt/portvakt/softhsm"
)

func newServeCommand() *cobra.Command {
	var (
		configFile string
		checkOnly  bool
		jsonOut    bool
		acceptGap  bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve Maskinporten tokens over gRPC (Unix socket and mutual TLS)",
		Long: `Serve Maskinporten tokens over gRPC.

At start the configuration, the HSM key, the key's certificate and the policy
are all checked; any problem stops the start with one line saying what to
fix. SIGHUP (or a change to their files) reloads the policy and the mutual-TLS
certificate, key and client CA; SIGTERM stops taking calls and lets those in
flight finish.

With --check, serve checks and exits, writing nothing (no audit record, no
socket, nothing on the HSM), so that it can check the configuration of a
daemon that runs: the configuration, the policy, each HSM (module, token,
PIN), each environment's key and certificate (one within
certificates.warn_before of its end is a warning), the audit log's chain and
its head on the HSM, the listeners (free, or held by a running Portvakt),
the TLS files, and that Maskinporten's endpoints answer. It prints one line
per check (--json: a JSON document) and fails when a check failed.`,
		Example: `  portvakt serve --config /etc/portvakt/portvakt.yaml
  portvakt serve --config portvakt.yaml --check
  portvakt serve --config portvakt.yaml --check --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				return usageError{fmt.Errorf("--config FILE is required")}
			}
			if jsonOut && !checkOnly {
				return usageError{fmt.Errorf("--json goes with --check")}
			}
			if checkOnly {
				return runCheck(cmd, configFile, acceptGap, jsonOut)
			}
			cfg, err := loadConfig(configFile)
			if err != nil {
				return err
			}
			logger := newLogger(cmd.ErrOrStderr(), cfg.Log)
			if err := serve(cmd.Context(), cfg, logger, acceptGap); err != nil {
				if cfg.Log.Format == "json" {
					// Read by whatever reads the JSON log: one record.
					logger.Error("portvakt serve failed", "error", err.Error())
					return loggedError{err}
				}
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "the configuration file (YAML)")
	cmd.Flags().BoolVar(&checkOnly, "check", false, "check everything the start does and more, writing nothing, then exit")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "with --check: print the checks as a JSON document")
	cmd.Flags().BoolVar(&acceptGap, "accept-audit-gap", false, "start on an audit log that does not reach the head the HSM keeps (records cut, the log deleted or replaced), recording the gap first in the new chain")
	return cmd
}

// serve starts the daemon and serves until SIGTERM or an interrupt.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, acceptGap bool) error {
	limit, from := daemon.ApplyMemoryLimit(cfg.MemoryLimit)
	logger.Info("memory limit set", "bytes", limit, "from", from)
	d, err := daemon.New(cfg, daemon.Options{Logger: logger, AcceptAuditGap: acceptGap})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	bi := buildinfo.Get()
	logger.Info("portvakt started", "version", bi.Version, "revision", bi.Revision, "goversion", bi.GoVersion, "addresses", d.Addresses())
	return d.Serve(ctx)
}

// loggedError is an error serve has written to its JSON log already: main
// exits 1 without printing it again as text.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// checkFailedError is the error of a `serve --check` in which a check
// failed (exit status 1); the checks are printed already.
type checkFailedError struct{ failed, total int }

func (e checkFailedError) Error() string {
	return fmt.Sprintf("serve --check: %d of %d checks failed", e.failed, e.total)
}

// runCheck runs `serve --check`: every check of the configuration in
// file, printed one line each (or as JSON), writing nothing else.
func runCheck(cmd *cobra.Command, file string, acceptGap, jsonOut bool) error {
	var report *daemon.CheckReport
	cfg, err := loadConfig(file)
	if err != nil {
		// A configuration's problems come one per line (file:line: ...):
		// each is a failed check of its own, so that none is buried.
		report = &daemon.CheckReport{}
		for _, problem := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			report.Checks = append(report.Checks, daemon.CheckResult{Name: "configuration", Status: daemon.CheckFailed, Detail: problem})
		}
	} else {
		// The steps' own log lines, warnings and errors only: the
		// report says the rest.
		logger := newLogger(cmd.ErrOrStderr(), config.Log{Level: "warn", Format: cfg.Log.Format})
		report = daemon.Check(cmd.Context(), cfg, daemon.CheckOptions{Logger: logger, AcceptAuditGap: acceptGap})
	}
	for i := range report.Checks {
		report.Checks[i].Detail = oneLine(report.Checks[i].Detail)
	}
	out := cmd.OutOrStdout()
	if jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		printChecks(out, report)
	}
	if n := report.Failed(); n > 0 {
		return checkFailedError{failed: n, total: len(report.Checks)}
	}
	return nil
}

// printChecks prints one line per check: its status, what it checked,
// and what was found (and what to do, unless it is ok).
func printChecks(w io.Writer, report *daemon.CheckReport) {
	for _, c := range report.Checks {
		status := string(c.Status)
		if c.Status == daemon.CheckFailed {
			status = "FAIL"
		}
		what := c.Name
		if c.Environment != "" {
			what += " (environment " + c.Environment + ")"
		}
		fmt.Fprintf(w, "%-7s %s: %s\n", status, what, c.Detail)
	}
}

// oneLine joins the lines of a detail (a YAML error has several), so that
// each check is one line.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, " ")
}

func newLogger(w io.Writer, cfg config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// loadConfig reads the daemon's configuration and fills in the development
// conveniences (softhsm_dir, SoftHSM2's module when none is named).
func loadConfig(file string) (*config.Config, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	for i := range cfg.HSMs {
		h := &cfg.HSMs[i]
		if h.Module, err = softhsm.Resolve(h.SoftHSMDir, h.Module); err != nil {
			return nil, fmt.Errorf("%s: HSM %s: %w", file, h.Name, err)
		}
	}
	return cfg, nil
}
