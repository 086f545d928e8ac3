package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portvakt/portvakt/client"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
	"github.com/portvakt/portvakt/selfservice"
)

func newKeysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "An environment's keys registered at Digdir, through the daemon",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newKeysListCommand(), newKeysRegisterCommand(), newKeysRotateCommand())
	return cmd
}

func newKeysRegisterCommand() *cobra.Command {
	var (
		conn    client.Options
		req     portvaktv1.RegisterKeyRequest
		bits    int
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Make a key in the environment's HSM (or take the one there) and add it to the keys registered at Digdir",
		Long: `Add a key of the environment's HSM to the keys its integration has registered
at Digdir, beside those there: none is removed. The key labelled --label is
taken if the HSM has it, else made there (signing only, never extractable).
Its kid is its RFC 7638 thumbprint. The daemon changes the set with a
Maskinporten token for idporten:dcr.read and idporten:dcr.modify, got for you
like any other token, and puts each step on the audit log. The daemon goes on
signing with its configured key.`,
		Example: `  portvakt keys register --env test --label registered-2027
  portvakt keys register --env prod --label eseal --pin-certificate --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireEnv(req.Environment); err != nil {
				return err
			}
			if req.KeyLabel == "" {
				return usagef("--label is required: the key's label in the HSM, such as registered-2027")
			}
			if err := keySizes.check(strconv.Itoa(bits)); err != nil {
				return err
			}
			req.Bits = int32(bits)
			resp, err := callDaemon(cmd.Context(), &conn, timeout, func(ctx context.Context, c *client.Client) (*portvaktv1.RegisterKeyResponse, error) {
				return c.Keys().RegisterKey(ctx, &req)
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, struct {
					Kid        string `json:"kid"`
					Created    bool   `json:"created"`
					Registered bool   `json:"registered"`
					Keys       any    `json:"keys"`
				}{resp.GetKid(), resp.GetCreated(), resp.GetRegistered(), keysJSON(resp.GetKeys())})
			}
			made := "taken from the HSM"
			if resp.GetCreated() {
				made = "made in the HSM"
			}
			if resp.GetRegistered() {
				fmt.Fprintf(out, "key %s (%s) registered as kid %s\n", req.KeyLabel, made, resp.GetKid())
			} else {
				fmt.Fprintf(out, "key %s is registered already as kid %s: nothing changed\n", req.KeyLabel, resp.GetKid())
			}
			printKeys(out, resp.GetKeys(), time.Now())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Environment, "env", "", "the environment")
	f.StringVar(&req.KeyLabel, "label", "", "the key's label in the HSM")
	f.IntVar(&bits, "bits", selfservice.DefaultKeyBits, "the size of a key made: "+strings.Join(keySizes.values, " or ")+" (Digdir documents 2048 for registered keys)")
	keySizes.complete(cmd)
	f.BoolVar(&req.PinCertificate, "pin-certificate", false, "pin the key to its certificate in the HSM (x5c)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	addDaemonFlags(cmd, &conn)
	return cmd
}

func newKeysListCommand() *cobra.Command {
	var (
		conn    client.Options
		env     string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Show the keys the environment's integration has registered at Digdir, and which the daemon signs with",
		Long: `Show the keys the environment's integration has registered at Digdir (its
JWKS, as Digdir's self-service API has them), when each stops being accepted,
and which of them the daemon signs with. The daemon reads them with a
Maskinporten token for idporten:dcr.read, got for you like any other token:
the policy must grant your client that scope in the environment.`,
		Example: `  portvakt keys list --env test
  portvakt keys list --env prod --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireEnv(env); err != nil {
				return err
			}
			resp, err := callDaemon(cmd.Context(), &conn, timeout, func(ctx context.Context, c *client.Client) (*portvaktv1.ListKeysResponse, error) {
				return c.Keys().ListKeys(ctx, &portvaktv1.ListKeysRequest{Environment: env})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), keysJSON(resp))
			}
			printKeys(cmd.OutOrStdout(), resp, time.Now())
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

func printKeys(out io.Writer, resp *portvaktv1.ListKeysResponse, now time.Time) {
	fmt.Fprintf(out, "environment %s, integration %s: %d registered keys\n", resp.GetEnvironment(), resp.GetClientId(), len(resp.GetKeys()))
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tIN USE\tBITS\tEXPIRES\tPINNED TO")
	for _, k := range resp.GetKeys() {
		inUse, expires, pinned := "", "not given", k.GetPinnedCertificateSubject()
		if k.GetInUse() {
			inUse = "yes"
		}
		if e := k.GetExpires(); e != nil {
			t := e.AsTime()
			expires = fmt.Sprintf("%s (in %d days)", t.Local().Format(time.DateOnly), int(t.Sub(now).Hours()/24))
			if !t.After(now) {
				expires = t.Local().Format(time.DateOnly) + " (expired)"
			}
		}
		if pinned == "" {
			pinned = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", k.GetKid(), inUse, k.GetBits(), expires, pinned)
	}
	tw.Flush()
	if !resp.GetSigningKeyRegistered() {
		fmt.Fprintf(out, "the key the daemon signs with (kid %s) is not registered: grants that name it are refused\n", resp.GetSigningKid())
	}
	if len(resp.GetTokenKeys()) > 0 {
		fmt.Fprintf(out, "keys on the environment's HSM token: %d\n", len(resp.GetTokenKeys()))
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LABEL\tTHUMBPRINT\tBITS\tREGISTERED AS\tIN USE")
		for _, k := range resp.GetTokenKeys() {
			registered, inUse := k.GetRegisteredKid(), ""
			if registered == "" {
				registered = "-"
			}
			if k.GetInUse() {
				inUse = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", k.GetLabel(), k.GetThumbprint(), k.GetBits(), registered, inUse)
		}
		tw.Flush()
	}
	printRotation(out, resp.GetRotation())
}

type registeredKeyJSON struct {
	Kid      string     `json:"kid"`
	InUse    bool       `json:"in_use"`
	Bits     int32      `json:"bits"`
	Expires  *time.Time `json:"expires,omitempty"`
	PinnedTo string     `json:"pinned_to,omitempty"`
}

func keysJSON(resp *portvaktv1.ListKeysResponse) any {
	keys := make([]registeredKeyJSON, 0, len(resp.GetKeys()))
	for _, k := range resp.GetKeys() {
		j := registeredKeyJSON{Kid: k.GetKid(), InUse: k.GetInUse(), Bits: k.GetBits(), PinnedTo: k.GetPinnedCertificateSubject()}
		if e := k.GetExpires(); e != nil {
			t := e.AsTime()
			j.Expires = &t
		}
		keys = append(keys, j)
	}
	return struct {
		Environment          string              `json:"environment"`
		ClientID             string              `json:"client_id"`
		SigningKid           string              `json:"signing_kid"`
		SigningKeyRegistered bool                `json:"signing_key_registered"`
		Keys                 []registeredKeyJSON `json:"keys"`
		TokenKeys            []tokenKeyJSON      `json:"token_keys,omitempty"`
		Rotation             json.RawMessage     `json:"rotation,omitempty"`
	}{resp.GetEnvironment(), resp.GetClientId(), resp.GetSigningKid(), resp.GetSigningKeyRegistered(), keys, tokenKeysJSON(resp), rotationJSON(resp.GetRotation())}
}

type tokenKeyJSON struct {
	Label         string `json:"label"`
	ID            string `json:"id,omitempty"`
	Thumbprint    string `json:"thumbprint,omitempty"`
	Bits          int32  `json:"bits"`
	RegisteredKid string `json:"registered_kid,omitempty"`
	InUse         bool   `json:"in_use"`
}

func tokenKeysJSON(resp *portvaktv1.ListKeysResponse) []tokenKeyJSON {
	var keys []tokenKeyJSON
	for _, k := range resp.GetTokenKeys() {
		keys = append(keys, tokenKeyJSON{k.GetLabel(), k.GetId(), k.GetThumbprint(), k.GetBits(), k.GetRegisteredKid(), k.GetInUse()})
	}
	return keys
}

// rotationJSON is a rotation as --json prints it: its proto fields, by
// their names; nil for none.
func rotationJSON(r *portvaktv1.KeyRotation) json.RawMessage {
	if r == nil {
		return nil
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
	if err != nil {
		return nil
	}
	return b
}
