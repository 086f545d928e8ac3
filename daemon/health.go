package daemon

import (
	"context"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// HealthService is the name the gRPC health service answers for
// environment env: "portvakt.v1.TokenService/<env>". The whole daemon
// answers as "" and "portvakt.v1.TokenService".
func HealthService(env string) string {
	return portvaktv1.TokenService_ServiceDesc.ServiceName + "/" + env
}

// healthPoll re-reads what no token reports by itself (the audit log),
// between the tokens' own reports.
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
			d.updateHealth()
		}
	}
}

// updateHealth sets each environment's health from its HSM token, and the
// daemon's: NOT_SERVING when no environment can sign or the audit log can
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
		if e.Signer.Health() != nil {
			state, up = healthpb.HealthCheckResponse_NOT_SERVING, 0
		} else {
			anyUp = true
		}
		d.health.SetServingStatus(HealthService(e.Config.Name), state)
		d.metrics.HSMUp.WithLabelValues(e.Config.Name, e.Signer.Token().Name()).Set(up)
	}
	overall := healthpb.HealthCheckResponse_SERVING
	if !anyUp || d.audit.Stats().Broken {
		overall = healthpb.HealthCheckResponse_NOT_SERVING
	}
	d.health.SetServingStatus("", overall)
	d.health.SetServingStatus(portvaktv1.TokenService_ServiceDesc.ServiceName, overall)
}
