package daemon

import (
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// LivenessService is the health name that answers SERVING for as long as
// the daemon serves, whatever its HSMs, Maskinporten or the audit log do:
// for a liveness probe, which must not restart a daemon that waits for
// its HSM to come back. Readiness asks "" (the whole daemon) instead.
const LivenessService = "liveness"

// healthMaxConnections bounds the health listener's connections; probes
// open one at a time. They are counted in fdReserve, as the metrics
// listener's scrapers are.
const healthMaxConnections = 16

// listenHealth opens listen.health, when configured: a plaintext gRPC
// server with the daemon's health service alone (no TokenService, no
// reflection), so that probes need no client certificate and this port
// gives nothing else away. Its calls are not logged: probes come every
// few seconds.
func (d *Daemon) listenHealth() error {
	h := d.cfg.Listen.Health
	if h == nil {
		return nil
	}
	lis, err := net.Listen("tcp", h.Address)
	if err != nil {
		return fmt.Errorf("listen.health.address: %w", err)
	}
	srv := grpc.NewServer(
		grpc.Creds(insecure.NewCredentials()),
		grpc.MaxRecvMsgSize(4<<10), // a HealthCheckRequest is a service name
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(4),
	)
	healthpb.RegisterHealthServer(srv, d.health)
	d.health.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	d.servers = append(d.servers, &server{name: "health", grpc: srv, listener: d.limitConnections("health", lis, healthMaxConnections)})
	return nil
}
