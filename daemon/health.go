package daemon

import (
	"context"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portvakt/portvakt/audit"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// HealthService is the name the gRPC health service answers for
// environment env: "portvakt.v1.TokenService/<env>". The whole daemon
// answers as "" and "portvakt.v1.TokenService".
func HealthService(env string) string {
	return portvaktv1.TokenService_ServiceDesc.ServiceName + "/" + env
}

// healthPoll re-reads what no token reports by itself, between the
// tokens' own reports; and looks at the audit file, so that a deleted log
// or a disk that works again shows without waiting for a request.
const healthPoll = 2 * time.Second

// watchHealth keeps the health service current until ctx ends.
func (d *Daemon) watchHealth(ctx context.Context) {
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// The Writer tells auditChanged of what Check finds; its error
			// is that, again.
			_ = d.audit.Check()
			d.updateHealth()
		}
	}
}

// auditChanged is told by the audit Writer when it stops taking records,
// writes a gap record, or takes records again. No token is issued while it
// takes none, so health changes at once, not at the next poll, and one log
// line says why.
func (d *Daemon) auditChanged(ev audit.Event) {
	attrs := []any{"cause", ev.Cause}
	if g := ev.Gap; g != nil {
		d.metrics.AuditGaps.WithLabelValues(g.Cause).Inc()
		attrs = append(attrs, "gap_seq", g.Seq, "from_seq", g.FromSeq, "to_seq", g.ToSeq, "previous_file", g.File)
	}
	if ev.Err != nil {
		attrs = append(attrs, "error", ev.Err.Error())
	}
	switch {
	case ev.Broken && ev.Final:
		d.log.Error("the audit log was changed by someone else: no token is issued until the daemon is restarted; run `portvakt audit verify` on it", attrs...)
	case ev.Broken:
		d.log.Error("the audit log cannot be written: no token is issued until a new audit file is opened (tried with back-off)", attrs...)
	default:
		d.log.Warn("the audit log takes records again: a new audit file opens with a gap record naming the records that may be lost", attrs...)
	}
	d.updateHealth()
}

// updateHealth sets each environment's health from its HSM token and its
// circuit breaker (Maskinporten failing it), and the daemon's: NOT_SERVING when no environment can sign or the audit log can
// no longer be written, since then no token can be issued. One
// environment's HSM outage shows on its own name and does not take the
// daemon down. The tokens call it when they go away or come back; it reads
// the current state, so calls in any order leave the last state shown.
func (d *Daemon) updateHealth() {
	if !d.serving.Load() || d.service == nil {
		return
	}
	// One at a time, so that the last call, which follows the last change,
	// is the one that stays.
	d.healthMu.Lock()
	defer d.healthMu.Unlock()
	anyUp := false
	for _, e := range d.service.Environments() {
		state, up := healthpb.HealthCheckResponse_SERVING, 1.0
		if e.Signing().Signer.Health() != nil {
			state, up = healthpb.HealthCheckResponse_NOT_SERVING, 0
		} else {
			anyUp = true
		}
		// Maskinporten failing the environment shows on its name only:
		// the daemon still serves the tokens it holds, so a load balancer
		// must not take it out for what every replica sees alike.
		breakerOpen := 0.0
		if d.service.MaskinportenDown(e.Config.Name) {
			state, breakerOpen = healthpb.HealthCheckResponse_NOT_SERVING, 1
		}
		d.health.SetServingStatus(HealthService(e.Config.Name), state)
		d.metrics.HSMUp.WithLabelValues(e.Config.Name, e.Signing().Signer.Token().Name()).Set(up)
		d.metrics.BreakerOpen.WithLabelValues(e.Config.Name).Set(breakerOpen)
	}
	overall := healthpb.HealthCheckResponse_SERVING
	broken := d.audit.Stats().Broken
	if broken {
		d.metrics.AuditBroken.Set(1)
	} else {
		d.metrics.AuditBroken.Set(0)
	}
	if !anyUp || broken {
		overall = healthpb.HealthCheckResponse_NOT_SERVING
	}
	d.health.SetServingStatus("", overall)
	d.health.SetServingStatus(portvaktv1.TokenService_ServiceDesc.ServiceName, overall)
}
