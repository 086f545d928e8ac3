// Command maskinporten-sim serves a strict local Maskinporten simulator
// (package mpsim) on a loopback address, for development, demos and tests.
//
//	maskinporten-sim --config sim.yaml [--listen 127.0.0.1:0] [--issuer URL]
//
// It prints one line to stdout once it is listening,
//
//	maskinporten-sim listening on http://127.0.0.1:PORT/ (issuer ISSUER)
//
// so scripts can read the port, logs one line per request to stderr (never
// an assertion or a token), and stops cleanly on SIGINT or SIGTERM. The
// configuration format is described in the mpsim package documentation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/portvakt/portvakt/mpsim"
)

// shutdownGrace is how long in-flight requests get to finish on shutdown.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "maskinporten-sim:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "maskinporten-sim:", err)
		os.Exit(1)
	}
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// run serves until ctx is done. It is main without the process: flags from
// args, output to stdout and stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("maskinporten-sim", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "YAML configuration `file` (required)")
	listen := flags.String("listen", "127.0.0.1:0", "loopback `address` to listen on; port 0 picks a free one")
	issuer := flags.String("issuer", "", "issuer `URL`, ending in /; default: the config's, else http://<listen address>/")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	switch {
	case flags.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q; all settings are flags", flags.Arg(0))}
	case *configPath == "":
		return usageError{errors.New("--config is required: the YAML file with clients, scopes and trust roots")}
	}
	if err := checkLoopback(*listen); err != nil {
		return usageError{err}
	}

	cfg, err := mpsim.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	defer ln.Close()
	// "localhost" is resolved by the system; make sure it really was
	// loopback.
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		return fmt.Errorf("--listen %s resolved to %s, which is not a loopback address", *listen, ip)
	}

	base := "http://" + ln.Addr().String() + "/"
	cfg.BaseURL = base
	switch {
	case *issuer != "":
		cfg.Issuer = *issuer
	case cfg.Issuer == "":
		cfg.Issuer = base
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	sim, err := mpsim.New(cfg)
	if err != nil {
		return err
	}

	srv := &http.Server{
		Handler:           sim.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Requests see ctx end on a signal, so one held by an injected
		// latency is not what keeps shutdown waiting.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "maskinporten-sim listening on %s (issuer %s)\n", base, cfg.Issuer)

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// checkLoopback refuses a listen address that is not loopback: the
// simulator issues tokens to anyone who asks correctly and must not be
// reachable from other machines.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q is not host:port: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if host == "" {
		host = "all interfaces"
	}
	return fmt.Errorf("--listen %q would listen on %s; the simulator only listens on loopback, e.g. 127.0.0.1:8089 or [::1]:8089", addr, host)
}
