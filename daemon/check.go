package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/internal/tracing"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokenservice"
)

// CheckStatus is how one check of `serve --check` ended.
type CheckStatus string

// Check statuses. A warning does not fail the check.
const (
	CheckOK      CheckStatus = "ok"
	CheckWarning CheckStatus = "warning"
	CheckFailed  CheckStatus = "fail"
)

// CheckResult is one check: what was checked (Name, and the Environment
// it concerns, if one), how it ended, and in Detail what was found and,
// unless it is ok, what to do.
type CheckResult struct {
	Name        string      `json:"name"`
	Status      CheckStatus `json:"status"`
	Environment string      `json:"environment,omitempty"`
	Detail      string      `json:"detail"`
}

// CheckReport is every check of a configuration, in the order made.
type CheckReport struct {
	Checks []CheckResult `json:"checks"`
}

// Failed counts the failed checks.
func (r *CheckReport) Failed() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == CheckFailed {
			n++
		}
	}
	return n
}

func (r *CheckReport) add(status CheckStatus, name, env, detail string) {
	r.Checks = append(r.Checks, CheckResult{Name: name, Status: status, Environment: env, Detail: detail})
}

// result adds a failure for a non-nil err, else ok with the detail.
func (r *CheckReport) result(err error, name, env, okDetail string) bool {
	if err != nil {
		r.add(CheckFailed, name, env, err.Error())
		return false
	}
	r.add(CheckOK, name, env, okDetail)
	return true
}

// CheckOptions adjust Check.
type CheckOptions struct {
	// Logger receives what the steps of the start log. Default: discarded.
	Logger *slog.Logger
	// AcceptAuditGap makes a log behind the HSM's head a warning, as
	// `serve --accept-audit-gap` would start on it.
	AcceptAuditGap bool
	// Now is the time certificates are judged at. Default time.Now.
	Now func() time.Time
}

// Check checks a configuration against the world as the start does (New
// runs the same steps), and further: it reads the audit log's chain to
// its end, looks at the listeners' addresses, and asks Maskinporten's
// endpoints for an answer. It writes nothing: no audit record, no
// directory, no socket, nothing on the HSMs; and it takes no lock a
// running daemon holds, so it can check the configuration of a daemon
// that runs. Each check goes on after a failure where it can, so that one
// run shows everything to fix.
func Check(ctx context.Context, cfg *config.Config, opts CheckOptions) *CheckReport {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := newDaemon(cfg, Options{Logger: opts.Logger})
	defer d.close() // the HSM sessions; nothing else is opened
	c := &checker{d: d, opts: opts, report: &CheckReport{}}
	c.configuration()
	policyOK := c.policy()
	c.hsms()
	c.environments()
	if policyOK {
		c.policyEnvironments()
	}
	c.auditLog()
	c.listeners(ctx)
	c.maskinporten(ctx)
	c.tracing()
	return c.report
}

// checker runs the checks of one Check.
type checker struct {
	d      *Daemon
	opts   CheckOptions
	report *CheckReport
	// failedHSMs are the HSMs that did not open, by name: what needs
	// them is not checked again.
	failedHSMs map[string]bool
	envs       []*tokenservice.Environment // those that opened
}

// tracing checks the OTEL_* variables as the start reads them: a value the
// daemon cannot honour stops it.
func (c *checker) tracing() {
	settings, err := tracing.FromEnv(os.Getenv)
	detail := "off: no OTEL_* variable asks for traces"
	if settings.Enabled {
		detail = "on: spans are exported over OTLP (" + settings.Protocol + ") as the OTEL_EXPORTER_OTLP_* variables say"
	}
	c.report.result(err, "tracing", "", detail)
}

func (c *checker) configuration() {
	c.report.add(CheckOK, "configuration", "", fmt.Sprintf("loads and is valid (environments: %d)", len(c.d.cfg.Environments)))
	for _, w := range c.d.cfg.Warnings() {
		c.report.add(CheckWarning, "configuration", "", w)
	}
}

func (c *checker) policy() bool {
	return c.report.result(c.d.openPolicies(), "policy", "", "the policy file "+c.d.cfg.Policy+" loads")
}

// hsms opens every configured HSM: its module loads, its token is there,
// and it accepts the PIN.
func (c *checker) hsms() {
	c.failedHSMs = map[string]bool{}
	for i := range c.d.cfg.HSMs {
		h := &c.d.cfg.HSMs[i]
		_, err := c.d.token(h)
		if !c.report.result(err, "hsm", "", fmt.Sprintf("HSM %s: module %s loads, token %q is there and accepts the PIN", h.Name, h.Module, h.Token)) {
			c.failedHSMs[h.Name] = true
		}
	}
}

// environments opens each environment's key and checks its certificate
// (or its public_key_file) as the start does, and warns of a certificate
// within certificates.warn_before of its end.
func (c *checker) environments() {
	signers := map[string]*signer.Signer{}
	for i, e := range c.d.cfg.Environments {
		if h := c.d.cfg.HSMOf(e); h != nil && c.failedHSMs[h.Name] {
			c.report.add(CheckFailed, "key", e.Name, fmt.Sprintf("not checked: HSM %s did not open (see its check)", h.Name))
			continue
		}
		env, err := c.d.openEnvironment(i, signers)
		if err != nil {
			c.report.add(CheckFailed, "key", e.Name, err.Error())
			continue
		}
		c.envs = append(c.envs, env)
		cert := env.Signing().Signer.Certificate()
		if cert == nil {
			c.report.add(CheckOK, "key", e.Name, fmt.Sprintf("key %s signs; it is registered by kid %s, without a certificate", keyName(e), e.KeyIDHeader))
			continue
		}
		c.report.add(CheckOK, "key", e.Name, fmt.Sprintf("key %s found; its certificate chain matches it", keyName(e)))
		notAfter := cert.NotAfter.UTC().Format(time.DateOnly)
		switch state, days := certificateExpiry(cert, c.opts.Now(), c.d.cfg.Certificates.WarnBefore); state {
		case certExpiresSoon:
			c.report.add(CheckWarning, "certificate", e.Name, fmt.Sprintf("the certificate %q expires on %s, in %d days (within certificates.warn_before, %s): order a renewal and import it with `portvakt hsm import-cert`",
				cert.Subject.CommonName, notAfter, days, inDays(c.d.cfg.Certificates.WarnBefore)))
		case certExpired: // openEnvironment refuses it already, but Now may be another time
			c.report.add(CheckFailed, "certificate", e.Name, fmt.Sprintf("the certificate %q expired on %s; import a renewed one (`portvakt hsm import-cert`)", cert.Subject.CommonName, notAfter))
		default:
			c.report.add(CheckOK, "certificate", e.Name, fmt.Sprintf("the certificate %q is valid until %s (%d days)", cert.Subject.CommonName, notAfter, days))
		}
	}
}

// inDays says a duration of whole days in days.
func inDays(d time.Duration) string {
	const day = 24 * time.Hour
	if d%day == 0 {
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}

// policyEnvironments checks that the policy names only configured
// environments, those whose key did not open included.
func (c *checker) policyEnvironments() {
	var envs []*tokenservice.Environment
	for _, e := range c.d.cfg.Environments {
		envs = append(envs, &tokenservice.Environment{Config: maskinporten.Environment{Name: e.Name}})
	}
	c.report.result(c.d.requireServedEnvironments(envs), "policy environments", "", "the policy names only configured environments")
}

// auditLog checks the audit key and the log's head on the HSM when the log
// is sealed, and the log's chain: all of it read, nothing written.
func (c *checker) auditLog() {
	seal := c.d.cfg.Audit.Seal
	if seal == nil {
		c.report.add(CheckWarning, "audit seal", "", unsealedWarning)
	} else if h := c.d.cfg.HSMNamed(seal.HSM); c.failedHSMs[h.Name] {
		c.report.add(CheckFailed, "audit seal", "", fmt.Sprintf("not checked: HSM %s did not open (see its check)", h.Name))
	} else {
		_, err := c.d.openAuditKey()
		c.report.result(err, "audit seal", "", fmt.Sprintf("the audit key %q is on HSM %s", seal.KeyLabel, h.Name))
		c.auditHead()
	}
	c.auditChain()
}

// auditHead checks that the log reaches the head the HSM keeps.
func (c *checker) auditHead() {
	gap, err := c.d.checkAuditHead()
	switch {
	case err != nil:
		c.report.add(CheckFailed, "audit head", "", err.Error())
	case gap != nil && c.opts.AcceptAuditGap:
		c.report.add(CheckWarning, "audit head", "", fmt.Sprintf("audit.file: %s; the start accepts it (--accept-audit-gap) and records the gap first", gap))
	case gap != nil:
		c.report.add(CheckFailed, "audit head", "", refuseGap(gap).Error())
	default:
		c.report.add(CheckOK, "audit head", "", "the log reaches the head the HSM keeps (or the HSM holds none yet)")
	}
}

// auditChain verifies the log's hash chain to its end.
func (c *checker) auditChain() {
	file := c.d.cfg.Audit.File
	files, err := audit.LogFiles(file)
	if errors.Is(err, audit.ErrNoLog) || errors.Is(err, fs.ErrNotExist) {
		if err := checkCreatable(file); err != nil {
			c.report.add(CheckFailed, "audit log", "", fmt.Sprintf("audit.file: there is no log yet, and %v", err))
			return
		}
		c.report.add(CheckOK, "audit log", "", fmt.Sprintf("there is no log yet: serve starts one at %s", file))
		return
	}
	if err != nil {
		c.report.add(CheckFailed, "audit log", "", fmt.Sprintf("audit.file: %v", err))
		return
	}
	res, err := audit.Verify(files...)
	if err != nil {
		// A daemon writing the log may have added or rotated a file
		// while it was read: a second read decides.
		res, err = audit.Verify(files...)
	}
	if err != nil {
		c.report.add(CheckFailed, "audit log", "", fmt.Sprintf("audit.file: %v; `portvakt audit verify` says more", err))
		return
	}
	detail := fmt.Sprintf("%s in %s, seq %d to %d: the chain verifies to its end", count(res.Records, "record"), count(res.Files, "file"), res.FirstSeq, res.LastSeq)
	if len(res.Gaps) > 0 {
		c.report.add(CheckWarning, "audit log", "", fmt.Sprintf("%s, across %d gap records (records may be lost there): `portvakt audit verify` lists them", detail, len(res.Gaps)))
		return
	}
	c.report.add(CheckOK, "audit log", "", detail)
}

// count is n and the noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
