package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/orgno"
	"github.com/portvakt/portvakt/policy"
)

// denied is what `policy explain` returns when the policy denies the
// request: the decision was made and printed, and the answer is no. main
// exits with status 3 for it, so that scripts can tell a denial (3) from a
// policy or command that could not be used (1) and a mistake in the command
// line (2).
type denied struct{ reason string }

func (d denied) Error() string { return "denied: " + d.reason }

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check the client authorisation policy and explain its decisions",
		Long: `The policy says which internal client may ask for which Maskinporten
scopes, in which environment and on whose behalf; everything else is
denied. check validates a policy file before it is deployed; explain shows
what the daemon would decide for a caller.`,
	}
	cmd.AddCommand(newPolicyCheckCommand(), newPolicyExplainCommand())
	return cmd
}

// policyCheckJSON is what `policy check --json` prints.
type policyCheckJSON struct {
	OK           bool                `json:"ok"`
	File         string              `json:"file"`
	Clients      int                 `json:"clients"`
	Rules        int                 `json:"rules"`
	Environments []string            `json:"environments"`
	Problems     []policyProblemJSON `json:"problems"`
}

type policyProblemJSON struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func newPolicyCheckCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file and list every problem in it",
		Long: `Validate a policy file. A valid file prints a summary; an invalid one
prints every problem, one per line as FILE:LINE: problem, and exits 1.
With --json, either is one JSON document on standard output.`,
		Example: `  portvakt policy check /etc/portvakt/policy.yaml
  portvakt policy check --json /etc/portvakt/policy.yaml`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("give the policy file: portvakt policy check FILE")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				return checkPolicyJSON(cmd.OutOrStdout(), args[0])
			}
			p, err := loadPolicy(cmd, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d clients, %d rules, environments: %s\n",
				len(p.Clients()), p.RuleCount(), strings.Join(p.Environments(), ", "))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the verdict as JSON")
	return cmd
}

// checkPolicyJSON is `policy check --json`: the verdict and every problem
// in one document, and a one-line error (exit status 1) when there are
// problems.
func checkPolicyJSON(w io.Writer, file string) error {
	p, loadErr := policy.Load(file)
	out := policyCheckJSON{OK: loadErr == nil, File: file, Environments: []string{}, Problems: []policyProblemJSON{}}
	if loadErr == nil {
		out.Clients, out.Rules, out.Environments = len(p.Clients()), p.RuleCount(), p.Environments()
	}
	for _, prob := range policy.Problems(loadErr) {
		var pp *policy.Problem
		if errors.As(prob, &pp) {
			out.Problems = append(out.Problems, policyProblemJSON{File: pp.File, Line: pp.Line, Message: pp.Err.Error()})
		} else {
			out.Problems = append(out.Problems, policyProblemJSON{Message: prob.Error()})
		}
	}
	if err := writeJSON(w, out); err != nil {
		return err
	}
	if loadErr != nil {
		return fmt.Errorf("%s has %s (in the JSON above): fix and check again", file, plural(len(out.Problems), "problem"))
	}
	return nil
}

func newPolicyExplainCommand() *cobra.Command {
	var (
		file       string
		req        policy.Request
		identities []string
		scopes     []string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Show what the policy decides for a caller, and why",
		Long: `Show what the daemon would decide for a request: which client the caller
is recognised as and the rule that allows the request, or why it is denied.
Give the caller's identities in the order the daemon tries them (a Unix peer
is uid:N then gid:M). Rate limits are not applied.

Exit status: 0 allowed, 3 denied, 1 when the policy cannot be used,
2 for a mistake in the command line. --json prints the decision as one
JSON document (the exit status is the same).`,
		Example: `  portvakt policy explain --policy policy.yaml --identity uid:1000 --identity gid:2000 \
    --env prod --scope svv:kjoretoy/ecoc
  portvakt policy explain --policy policy.yaml --identity spiffe://example.org/ns/billing/sa/api \
    --env test --scope svv:kjoretoy/ecoc.delegert --consumer-org 974760673
  portvakt policy explain --policy policy.yaml --identity uid:1000 \
    --env prod --scope svv:kjoretoy/ecoc --system-user 313427137`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case file == "":
				return usageError{fmt.Errorf("--policy FILE is required")}
			case len(identities) == 0:
				return usageError{fmt.Errorf("--identity is required: the caller's identity, such as uid:1000 or spiffe://example.org/ns/billing/sa/api")}
			case len(scopes) == 0:
				return usageError{fmt.Errorf("--scope is required: the scope asked for, such as svv:kjoretoy/ecoc")}
			case req.Environment == "":
				// No default: a decision in an environment nobody chose
				// would be an answer to the wrong question.
				return usageError{fmt.Errorf("--env is required: the environment asked for, such as prod or test")}
			case req.ConsumerOrg != "" && req.SystemUserOrg != "":
				return usageError{fmt.Errorf("give --consumer-org (delegation) or --system-user (an Altinn system user), not both: no request has both")}
			}
			for _, o := range []struct{ flag, value string }{{"--consumer-org", req.ConsumerOrg}, {"--system-user", req.SystemUserOrg}} {
				if _, err := orgno.Parse(o.value); o.value != "" && err != nil {
					return usagef("%s: %w", o.flag, err)
				}
			}
			p, err := loadPolicy(cmd, file)
			if err != nil {
				return err
			}
			req.Identities, req.Scopes = identities, scopes
			d := p.Decide(req)
			out := cmd.OutOrStdout()
			if asJSON {
				return explainJSON(out, d, req)
			}
			if !d.Allowed {
				fmt.Fprintf(out, "DENY   %s\n", d.Reason)
				return denied{d.Reason}
			}
			rules := "rule"
			if len(d.Rules) > 1 {
				rules = "rules"
			}
			forSystemUser := ""
			if req.SystemUserOrg != "" {
				forSystemUser = " for system user " + req.SystemUserOrg
			}
			fmt.Fprintf(out, "ALLOW  client %s (identity %s)%s by %s %s\n", d.Client, d.Identity, forSystemUser, rules, strings.Join(d.Rules, ", "))
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&file, "policy", "", "the policy file")
	// StringArray, not StringSlice: a common name may hold a comma.
	fs.StringArrayVar(&identities, "identity", nil, "the caller's identity; repeat in the order the daemon tries them")
	fs.StringArrayVar(&scopes, "scope", nil, "a scope asked for; repeat for several")
	fs.StringVar(&req.Environment, "env", "", "the environment asked for (required)")
	fs.StringVar(&req.ConsumerOrg, "consumer-org", "", "the organisation asked on behalf of (delegation)")
	fs.StringVar(&req.SystemUserOrg, "system-user", "", "the customer whose Altinn system user is asked for")
	fs.BoolVar(&asJSON, "json", false, "print the decision as JSON")
	return cmd
}

// policyExplainJSON is what `policy explain --json` prints.
type policyExplainJSON struct {
	Decision   string   `json:"decision"` // ALLOW or DENY
	Allowed    bool     `json:"allowed"`
	Client     string   `json:"client,omitempty"`
	Identity   string   `json:"identity,omitempty"`
	SystemUser string   `json:"system_user,omitempty"`
	Rules      []string `json:"rules"`
	Reason     string   `json:"reason"`
}

// explainJSON prints the decision; a denial is denied (exit status 3), as
// without --json.
func explainJSON(w io.Writer, d policy.Decision, req policy.Request) error {
	out := policyExplainJSON{Decision: "ALLOW", Allowed: d.Allowed, Client: d.Client, Identity: d.Identity,
		SystemUser: req.SystemUserOrg, Rules: d.Rules, Reason: d.Reason}
	if out.Rules == nil {
		out.Rules = []string{}
	}
	if !d.Allowed {
		out.Decision = "DENY"
	}
	if err := writeJSON(w, out); err != nil {
		return err
	}
	if !d.Allowed {
		return denied{d.Reason}
	}
	return nil
}

// loadPolicy loads a policy file and, when it is invalid, prints its
// problems one per line on stderr and returns a one-line error: main
// prints errors on one line, and a list belongs on lines of its own.
func loadPolicy(cmd *cobra.Command, file string) (*policy.Policy, error) {
	p, err := policy.Load(file)
	if err == nil {
		return p, nil
	}
	problems := policy.Problems(err)
	if len(problems) == 1 {
		return nil, err
	}
	for _, prob := range problems {
		fmt.Fprintln(cmd.ErrOrStderr(), prob)
	}
	return nil, listedError{fmt.Sprintf("%s has %d problems (listed above): fix them and check again", file, len(problems)), err}
}

// listedError stands for problems already printed: its message is a
// summary, and it unwraps to the problems for errors.Is and errors.As.
type listedError struct {
	summary string
	err     error
}

func (e listedError) Error() string { return e.summary }
func (e listedError) Unwrap() error { return e.err }
