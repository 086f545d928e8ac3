package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
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
flight finish.`,
		Example: `  portvakt serve --config /etc/portvakt/portvakt.yaml
  portvakt serve --config portvakt.yaml --check`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile == "" {
				return usageError{fmt.Errorf("--config FILE is required")}
			}
			cfg, err := loadConfig(configFile)
			if err != nil {
				return err
			}
			logger := newLogger(cmd.ErrOrStderr(), cfg.Log)
			d, err := daemon.New(cfg, daemon.Options{Logger: logger, AcceptAuditGap: acceptGap})
			if err != nil {
				return err
			}
			if checkOnly {
				for _, w := range cfg.Warnings() {
					fmt.Fprintf(cmd.OutOrStdout(), "warning: %s\n", w)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok: configuration, HSM keys, certificates and policy checked (%d environments)\n", len(cfg.Environments))
				return d.Close()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			bi := buildinfo.Get()
			logger.Info("portvakt started", "version", bi.Version, "revision", bi.Revision, "goversion", bi.GoVersion, "addresses", d.Addresses())
			return d.Serve(ctx)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "the configuration file (YAML)")
	cmd.Flags().BoolVar(&checkOnly, "check", false, "check everything as at start, then exit")
	cmd.Flags().BoolVar(&acceptGap, "accept-audit-gap", false, "start on an audit log that does not reach the head the HSM keeps (records cut, the log deleted or replaced), recording the gap first in the new chain")
	return cmd
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
