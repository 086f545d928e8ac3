package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Listener serves /metrics on an address of its own, so that scraping
// needs no gRPC client identity and the API port exposes nothing else.
type Listener struct {
	srv *http.Server
	lis net.Listener
}

// Listen opens the metrics listener.
func (m *Metrics) Listen(addr string) (*Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	return &Listener{lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is where the listener listens.
func (l *Listener) Addr() string { return l.lis.Addr().String() }

// Serve serves until ctx ends.
func (l *Listener) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(shutdown)
	}()
	if err := l.srv.Serve(l.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
