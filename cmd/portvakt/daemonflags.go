package main

import (
	"cmp"
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/client"
)

// addDaemonFlags are the flags of a command that calls the daemon: its
// socket, or its mutual-TLS address and this caller's certificate.
func addDaemonFlags(cmd *cobra.Command, conn *client.Options) {
	f := cmd.Flags()
	f.StringVar(&conn.Socket, "socket", "", "the daemon's Unix socket (default $"+client.SocketEnv+" or "+defaultSocket+")")
	f.StringVar(&conn.Address, "addr", "", "host:port of the daemon's mutual-TLS listener")
	f.StringVar(&conn.CertFile, "cert", "", "client certificate (with --addr)")
	f.StringVar(&conn.KeyFile, "key", "", "client key (with --addr)")
	f.StringVar(&conn.CAFile, "ca", "", "CA of the daemon's server certificate (with --addr)")
	f.StringVar(&conn.ServerName, "server-name", "", "name to check in the daemon's certificate")
}

// dialDaemon checks the daemon flags and connects as they say.
func dialDaemon(conn *client.Options) (*client.Client, error) {
	switch {
	case conn.Socket != "" && conn.Address != "":
		return nil, usagef("give --socket or --addr, not both")
	case conn.Address != "" && (conn.CertFile == "" || conn.KeyFile == "" || conn.CAFile == ""):
		return nil, usagef("--addr needs --cert, --key and --ca: the daemon's mutual TLS")
	}
	if conn.Address == "" && conn.Socket == "" {
		// What client.Dial would use, named here so that an error can
		// say where the daemon was looked for.
		conn.Socket = cmp.Or(os.Getenv(client.SocketEnv), defaultSocket)
	}
	return client.Dial(*conn)
}

// callDaemon connects as conn says and makes call within timeout; a
// failed call is explained in a sentence (explainCallError).
func callDaemon[T any](ctx context.Context, conn *client.Options, timeout time.Duration, call func(context.Context, *client.Client) (T, error)) (T, error) {
	var zero T
	if timeout <= 0 {
		return zero, usagef("--timeout %s: give a positive duration, such as 30s", timeout)
	}
	c, err := dialDaemon(conn)
	if err != nil {
		return zero, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := call(ctx, c)
	if err != nil {
		return zero, explainCallError(*conn, timeout, err)
	}
	return resp, nil
}

// requireEnv refuses a command for an environment that names none.
func requireEnv(env string) error {
	if env == "" {
		return usagef("--env is required")
	}
	return nil
}
