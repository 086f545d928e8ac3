package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/portvakt/portvakt/client"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

func newKeysRotateCommand() *cobra.Command {
	var (
		conn    client.Options
		env     string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Begin a rotation of the environment's registered key now",
		Long: `Begin a rotation of the environment's registered key now (the environment
needs rotation configured): the daemon makes a new key in the HSM, registers
it beside the current one at Digdir, probes until Maskinporten accepts it
(that can take a couple of minutes), and then signs new grants with it, without
a restart and without a failed call. The old key leaves the registered keys
once the last token it got has expired, and the HSM after
rotation.delete_after. Every step is on the audit log (kind key).

The command returns at once; "portvakt keys list" shows how far the rotation
is. The policy must grant your client idporten:dcr.read and
idporten:dcr.modify in the environment.`,
		Example: `  portvakt keys rotate --env test
  portvakt keys list --env test    # the rotation's progress`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireEnv(env); err != nil {
				return err
			}
			resp, err := callDaemon(cmd.Context(), &conn, timeout, func(ctx context.Context, c *client.Client) (*portvaktv1.RotateKeyResponse, error) {
				return c.Keys().RotateKey(ctx, &portvaktv1.RotateKeyRequest{Environment: env})
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, rotationJSON(resp.GetRotation()))
			}
			fmt.Fprintf(out, "rotation of environment %s begun; `portvakt keys list --env %s` shows its progress\n", env, env)
			printRotation(out, resp.GetRotation())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "the environment")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	addDaemonFlags(cmd, &conn)
	return cmd
}

// printRotation says where a rotation stands, one line per key in it.
func printRotation(out io.Writer, r *portvaktv1.KeyRotation) {
	if r == nil {
		return
	}
	when := func(t *timestamppb.Timestamp, none string) string {
		if t == nil {
			return none
		}
		return t.AsTime().Local().Format(time.RFC3339)
	}
	fmt.Fprintf(out, "rotation: signing with kid %s (key %s), registration ends %s\n",
		r.GetCurrentKid(), r.GetCurrentKeyLabel(), when(r.GetCurrentExpires(), "when not known"))
	switch {
	case r.GetNextKid() != "" && r.GetNextRegistered():
		fmt.Fprintf(out, "  on its way in: kid %s (key %s), registered; waiting for Maskinporten to accept it\n", r.GetNextKid(), r.GetNextKeyLabel())
	case r.GetNextKid() != "":
		fmt.Fprintf(out, "  on its way in: kid %s (key %s), being registered\n", r.GetNextKid(), r.GetNextKeyLabel())
	case r.GetRequested():
		fmt.Fprintln(out, "  asked for: it begins at the next step")
	}
	if r.GetPreviousKid() != "" {
		state := "leaves the registered keys at " + when(r.GetPreviousRetireAfter(), "a time set once its grants in flight are done")
		if r.GetPreviousUnregistered() {
			state = "has left the registered keys; leaves the HSM later"
		}
		fmt.Fprintf(out, "  on its way out: kid %s (key %s), %s\n", r.GetPreviousKid(), r.GetPreviousKeyLabel(), state)
	}
	if t := r.GetNextRotation(); t != nil {
		fmt.Fprintf(out, "  next automatic rotation: %s\n", when(t, ""))
	}
	if r.GetFailures() > 0 {
		fmt.Fprintf(out, "  %d failed steps since the daemon started (each is tried again); the latest: %s\n", r.GetFailures(), r.GetLastError())
	}
}
