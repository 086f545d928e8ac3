package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/orgno"
)

// defaultSocket is where the daemon listens unless told otherwise.
const defaultSocket = "/run/portvakt/portvakt.sock"

func newTokenCommand() *cobra.Command {
	var (
		conn       client.Options
		req        client.Request
		systemUser client.SystemUser
		asJSON     bool
		showToken  bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Ask the daemon for a Maskinporten token and show it with its claims",
		Example: `  portvakt token --socket /run/portvakt/portvakt.sock --env test --scope svv:kjoretoy/ecoc
  portvakt token --env test --scope svv:kjoretoy/ecoc.delegert --consumer-org 974760673 --json
  portvakt token --env prod --scope svv:kjoretoy/ecoc --system-user 313427137 --system-user-ref kjoretoy-prod-1
  portvakt token --addr portvakt.internal:8443 --cert me.pem --key me-key.pem --ca ca.pem --scope svv:kjoretoy/ecoc`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkTokenFlags(&req, &systemUser); err != nil {
				return err
			}
			if asJSON && showToken {
				return usagef("give --json or --raw, not both")
			}
			tok, err := callDaemon(cmd.Context(), &conn, timeout, func(ctx context.Context, c *client.Client) (*oauth2.Token, error) {
				return c.Token(ctx, req)
			})
			if err != nil {
				return err
			}
			claims := decodeClaims(tok.AccessToken)
			out := cmd.OutOrStdout()
			if asJSON {
				return writeTokenJSON(out, tok.AccessToken, tok.TokenType, tok.Expiry, claims)
			}
			if showToken {
				fmt.Fprintln(out, tok.AccessToken)
				return nil
			}
			fmt.Fprintf(out, "%s token, expires %s (in %s)\n", tok.TokenType, tok.Expiry.Local().Format(time.RFC3339), time.Until(tok.Expiry).Round(time.Second))
			fmt.Fprintf(out, "access_token: %s\n", tok.AccessToken)
			if claims != nil {
				pretty, _ := json.MarshalIndent(claims, "", "  ")
				fmt.Fprintf(out, "claims (decoded, not verified):\n%s\n", pretty)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&req.Scopes, "scope", nil, "scope to ask for (repeatable), such as svv:kjoretoy/ecoc")
	f.StringVar(&req.Environment, "env", "", "environment (may be left out when the daemon serves one)")
	f.StringVar(&req.ConsumerOrg, "consumer-org", "", "organisation number to ask on behalf of (delegated scopes)")
	f.StringVar(&systemUser.Org, "system-user", "", "organisation number of the customer whose Altinn system user the token is for")
	f.StringVar(&systemUser.ExternalRef, "system-user-ref", "", "the system user's external reference, when it was created with one (with --system-user)")
	f.StringVar(&req.Resource, "resource", "", "audience of the token (default: the environment's)")
	f.DurationVar(&req.MinValidity, "min-validity", 0, "how long the token must stay valid at least")
	addDaemonFlags(cmd, &conn)
	f.BoolVar(&asJSON, "json", false, "print JSON: access_token, token_type, expires_at, claims")
	f.BoolVar(&showToken, "raw", false, "print only the access token (for scripts)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// checkTokenFlags refuses what no daemon could answer: no scope, a
// negative duration, an organisation number that is not one, a system
// user and a consumer both.
func checkTokenFlags(req *client.Request, systemUser *client.SystemUser) error {
	switch {
	case len(req.Scopes) == 0:
		return usagef("--scope is required")
	case req.MinValidity < 0:
		return usagef("--min-validity %s is negative: give how long the token must stay valid, such as 60s, or leave it out", req.MinValidity)
	case systemUser.ExternalRef != "" && systemUser.Org == "":
		return usagef("--system-user-ref needs --system-user, the customer's organisation number")
	case systemUser.Org != "" && req.ConsumerOrg != "":
		return usagef("give --consumer-org (delegation) or --system-user (an Altinn system user), not both")
	}
	for _, o := range []struct{ flag, value string }{{"--consumer-org", req.ConsumerOrg}, {"--system-user", systemUser.Org}} {
		if o.value == "" {
			continue
		}
		if _, err := orgno.Parse(o.value); err != nil {
			return usagef("%s: %w", o.flag, err)
		}
	}
	if systemUser.Org != "" {
		req.SystemUser = systemUser
	}
	return nil
}

// decodeClaims shows a JWT access token's payload. Maskinporten's tokens
// are opaque to clients; this is for people looking at them.
func decodeClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return nil
	}
	return claims
}

func writeTokenJSON(w io.Writer, token, tokenType string, expiry time.Time, claims map[string]any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"access_token": token, "token_type": tokenType, "expires_at": expiry.UTC().Format(time.RFC3339), "claims": claims,
	})
}
