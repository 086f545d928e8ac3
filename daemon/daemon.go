// Package daemon assembles Portvakt from its configuration and serves it:
// it checks everything at start (configuration, HSM key, certificate,
// policy), listens on the Unix socket and the mutual-TLS port, and shuts
// down gracefully.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/jonboulle/clockwork"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/hsm"
	"github.com/portvakt/portvakt/metrics"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/signer"
	"github.com/portvakt/portvakt/tokenservice"
)

// Daemon is a configured, checked Portvakt, ready to serve.
type Daemon struct {
	cfg      *config.Config
	log      *slog.Logger
	service  *tokenservice.Service
	policies *policy.Store
	watcher  *policy.Watcher
	tls      *tlsReloader    // nil without a mutual-TLS listener
	tokens   []*signer.Token // one per HSM in use
	serving  atomic.Bool     // health is reported from Serve on
	healthMu sync.Mutex
	health   *health.Server
	servers  []*server
	metrics  *metrics.Metrics
	audit    *audit.Writer
	recorder *recorder           // nil until the service is assembled
	seal     *audit.Checkpointer // nil when the log is not sealed
	sealHSM  hsm.Token           // where the audit key and the log's head are
	sealStop context.CancelFunc
	sealDone chan struct{}
	scrape   *metrics.Listener
	tracing  tracingState
	// rotationStarts are the rotations openEnvironments found, made by
	// openRotations once the service exists.
	rotationStarts []*rotationStart
	// startTakeovers are the successors whose time came while the daemon
	// was down, put on record by recordStartTakeovers.
	startTakeovers []startTakeover
}

// startTakeover is a successor that signs from the start in env.
type startTakeover struct {
	env  string
	next *tokenservice.Succession
}

// recordStartTakeovers puts each successor that signs from the start on
// record, as a takeover while the daemon runs is: before any grant, and a
// start that cannot record one fails (a key change nobody can account
// for).
func (d *Daemon) recordStartTakeovers() error {
	ctx := tokenservice.RenewalContext(context.Background())
	for _, t := range d.startTakeovers {
		if err := d.service.RecordTakeover(ctx, t.env, t.next, true); err != nil {
			return fmt.Errorf("audit.file: recording that the successor certificate of environment %s signs from this start: %w", t.env, err)
		}
	}
	return nil
}

// server is one gRPC server on one listener.
type server struct {
	name     string
	grpc     *grpc.Server
	listener net.Listener
}

// Options add what the configuration does not hold.
type Options struct {
	Logger *slog.Logger
	// AcceptAuditGap starts on an audit log that does not reach the head
	// the HSM keeps (records cut, the log deleted or replaced), recording
	// the gap first in the new chain. Without it such a start is refused.
	AcceptAuditGap bool
	// Clock is what the token cache and token validity run on. Default the
	// real clock; tests pass a fake one to let hours pass at once.
	Clock clockwork.Clock
	// TracerProvider, when set, takes the spans instead of the one the
	// OTEL_* environment would start (tests pass an in-memory exporter's);
	// its owner shuts it down.
	TracerProvider trace.TracerProvider
}

// New checks the configuration against the world (the HSM key, its
// certificate, the policy) and opens the listeners. Its error is one line
// saying what to fix.
func New(cfg *config.Config, opts Options) (_ *Daemon, err error) {
	d := newDaemon(cfg, opts)
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if err := d.startTracing(opts); err != nil {
		return nil, err
	}
	v, err := d.verify(opts.AcceptAuditGap)
	if err != nil {
		return nil, err
	}
	if err := d.start(v, opts); err != nil {
		return nil, err
	}
	return d, nil
}

// newDaemon is a daemon with nothing opened yet, for New and Check.
func newDaemon(cfg *config.Config, opts Options) *Daemon {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Daemon{cfg: cfg, log: opts.Logger, health: health.NewServer(), metrics: metrics.New()}
}

// verified is what verify found and start builds on.
type verified struct {
	gap      *audit.Problem // the log is behind the HSM's head, as the operator accepted
	envs     []*tokenservice.Environment
	auditKey *signer.Signer // nil when the log is not sealed
}

// verify is the part of the start that writes nothing: it reads the
// policy, the audit log's head on the HSM, the HSMs' keys and their
// certificates. `serve --check` runs the same steps one by one (check.go).
func (d *Daemon) verify(acceptGap bool) (v verified, err error) {
	if err := d.openPolicies(); err != nil {
		return v, err
	}
	if d.cfg.Audit.Seal != nil {
		if v.gap, err = d.checkAuditHead(); err != nil {
			return v, err
		}
		if v.gap != nil && !acceptGap {
			return v, refuseGap(v.gap)
		}
	}
	for _, w := range d.cfg.Warnings() {
		d.log.Warn(w)
	}
	if v.envs, err = d.openEnvironments(); err != nil {
		return v, err
	}
	if err := d.requireServedEnvironments(v.envs); err != nil {
		return v, err
	}
	if v.auditKey, err = d.openAuditKey(); err != nil {
		return v, err
	}
	return v, nil
}

// openPolicies loads the policy file and counts its reloads.
func (d *Daemon) openPolicies() (err error) {
	if d.policies, err = policy.NewStore(d.cfg.Policy, d.log); err != nil {
		return err
	}
	d.policies.OnReload(func(ev policy.ReloadEvent) {
		result := "ok"
		if !ev.OK {
			result = "failed"
		}
		d.metrics.PolicyReloads.WithLabelValues(result).Inc()
	})
	return nil
}

// requireServedEnvironments is checked now and at every reload: a policy
// naming an environment the daemon does not serve is most likely a typo
// that would deny silently.
func (d *Daemon) requireServedEnvironments(envs []*tokenservice.Environment) error {
	return d.policies.Require(func(p *policy.Policy) error { return checkPolicyEnvironments(p, envs) })
}

// start is the part of the start that writes: the audit log's start
// record, the seal, the listeners.
func (d *Daemon) start(v verified, opts Options) (err error) {
	cfg := d.cfg
	if d.audit, err = audit.Open(audit.Options{Path: cfg.Audit.File, Instance: cfg.Audit.Instance, NoSync: cfg.Audit.NoSync, MaxBytes: cfg.Audit.MaxBytes, MaxAge: cfg.Audit.MaxAge,
		MaxRecordBytes: maxRecordBytes, AcceptVanished: opts.AcceptAuditGap, OnChange: d.auditChanged}); err != nil {
		return fmt.Errorf("audit.file: %w", err)
	}
	auditStart := d.audit.Stats().LastSeq // the start record Open wrote: the first this run seals
	if v.gap != nil {
		if _, err := d.audit.Append(audit.Record{Kind: audit.KindHeadGap, Reason: "started on a log behind the HSM's head, as the operator accepted: " + v.gap.Detail}); err != nil {
			return fmt.Errorf("audit.file: recording the accepted gap: %w", err)
		}
		d.log.Warn("started on an audit log behind the HSM's head, as accepted; the gap is recorded", "gap", v.gap.Detail)
	}
	if d.watcher, err = d.policies.NewWatcher(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if err := d.openSeal(v.auditKey, auditStart); err != nil {
		return err
	}
	d.recorder = newRecorder(d.audit, d.metrics, d.log, d.tracing.tracer)
	d.service, err = tokenservice.New(tokenservice.Options{
		Environments: v.envs,
		Policies:     d.policies,
		Client:       newMaskinportenClient(cfg, opts.Clock),
		Cache:        cacheOptions(cfg, opts.Clock, d.breakerChanged),
		Recorder:     d.recorder,
		Logger:       d.log,
		Tracer:       d.tracing.tracer,

		ObserveMaskinporten: observeMaskinporten(d.metrics, v.envs),
	})
	if err != nil {
		return err
	}
	if err := d.recordStartTakeovers(); err != nil {
		return err
	}
	if err := d.openRotations(d.rotationStarts); err != nil {
		return err
	}
	d.registerStateMetrics()
	if cfg.Metrics.Address != "" {
		if d.scrape, err = d.metrics.Listen(cfg.Metrics.Address); err != nil {
			return err
		}
	}
	return d.listen()
}

// Addresses are where the daemon listens, by listener name ("unix",
// "tcp", "health", "metrics").
func (d *Daemon) Addresses() map[string]string {
	addrs := map[string]string{}
	for _, s := range d.servers {
		addrs[s.name] = s.listener.Addr().String()
	}
	if d.scrape != nil {
		addrs["metrics"] = d.scrape.Addr()
	}
	return addrs
}

// Service is the token service, for metrics and tests.
func (d *Daemon) Service() *tokenservice.Service { return d.service }

// Policies is the policy store, for metrics and tests.
func (d *Daemon) Policies() *policy.Store { return d.policies }

// Serve answers calls until ctx ends, then stops taking new calls, lets
// those in flight finish for the configured grace, and closes everything.
// SIGHUP reloads the policy and the mutual-TLS files; changes to their
// files do too.
func (d *Daemon) Serve(ctx context.Context) error {
	defer d.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Caught from before the servers answer (and so before READY=1 and
	// health's SERVING): a SIGHUP reloads, never meets the default action
	// (to exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)

	errc := make(chan error, len(d.servers))
	for _, s := range d.servers {
		go func() {
			if err := s.grpc.Serve(s.listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("%s listener: %w", s.name, err)
			}
		}()
		d.log.Info("listening", "listener", s.name, "address", s.listener.Addr().String())
	}
	d.metrics.PolicyWatching.Set(1)
	go func() {
		if err := d.watcher.Run(ctx); err != nil {
			d.metrics.PolicyWatching.Set(0)
			d.log.Error("the policy file is no longer watched: changes take effect only on SIGHUP", "error", err.Error())
		}
	}()
	if d.scrape != nil {
		go func() {
			if err := d.scrape.Serve(ctx); err != nil {
				errc <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		d.log.Info("listening", "listener", "metrics", "address", d.scrape.Addr())
	}
	d.startSealing(ctx)
	go d.watchCertificates(ctx)
	go d.watchSuccessions(ctx)
	waitRotations := d.runRotations(ctx)
	go d.reloadOnSIGHUP(ctx, hup)
	d.serving.Store(true)
	d.updateHealth()
	go d.watchHealth(ctx)
	if d.tls != nil {
		go d.tls.run(ctx)
	}
	d.notifyReady("serving") // systemd: see notify.go
	stopWatchdog := d.startWatchdog()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	d.shutdown()
	cancel()
	waitRotations() // before close: a step may be using the HSM
	stopWatchdog()
	return err
}

// shutdown stops every server gracefully within the grace period.
func (d *Daemon) shutdown() {
	d.notifyStopping()
	d.health.Shutdown()
	done := make(chan struct{})
	go func() {
		for _, s := range d.servers {
			s.grpc.GracefulStop()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d.cfg.GRPC.ShutdownGrace):
		d.log.Warn("calls still running after the shutdown grace; stopping them", "grace", d.cfg.GRPC.ShutdownGrace.String())
		for _, s := range d.servers {
			s.grpc.Stop()
		}
	}
}

// close releases everything in the order the work depends on: the
// listeners (no new calls), the token cache (its refreshes and fetches sign
// and record), the policy watcher, the last checkpoint (it signs with the
// audit key), the HSM tokens, and last the audit log, whose final record's
// hash is logged as the anchor once nothing can write after it.
func (d *Daemon) close() {
	for _, s := range d.servers {
		s.grpc.Stop()
		if s.name == "unix" {
			_ = os.Remove(s.listener.Addr().String())
		}
	}
	if d.service != nil {
		// The cache's background refreshes and fetches sign and record:
		// they end before the HSMs and the audit log close.
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.GRPC.ShutdownGrace)
		if err := d.service.Close(ctx); err != nil {
			d.log.Warn("token fetches still running at shutdown", "error", err.Error())
		}
		cancel()
	}
	if d.recorder != nil {
		// The counts of refused calls not yet written: before the last
		// checkpoint, so that it seals them too.
		d.recorder.close()
	}
	if d.watcher != nil {
		_ = d.watcher.Close()
	}
	d.tls.close()
	// The last checkpoint needs the audit key: before the tokens close.
	d.stopSealing()
	for _, t := range d.tokens {
		_ = t.Close()
	}
	if d.audit != nil {
		cerr := d.audit.Close() // checks the file a last time, and writes a pending gap record
		st := d.audit.Stats()
		if cerr != nil {
			d.log.Error("audit log closed broken", "error", cerr.Error())
		}
		// An anchor for `portvakt audit verify --expect-last-hash`: a copy
		// kept elsewhere shows records cut from the end of the log.
		d.log.Info("audit log closed", "last_seq", st.LastSeq, "last_hash", st.LastHash)
	}
	d.stopTracing() // last: everything before it may make spans
}

func (d *Daemon) reloadOnSIGHUP(ctx context.Context, hup chan os.Signal) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.reloadNotified() // the policy and the TLS files, between RELOADING=1 and READY=1 to systemd
		}
	}
}

// registerServices puts the API, health and reflection on a server.
func (d *Daemon) registerServices(g *grpc.Server) {
	d.service.Register(g)
	healthpb.RegisterHealthServer(g, d.health)
	reflection.Register(g)
}

// Close releases the listeners and the HSM sessions of a daemon that will
// not Serve (after a check, say).
func (d *Daemon) Close() error {
	d.close()
	return nil
}
