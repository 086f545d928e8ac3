package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/portvakt/portvakt/internal/connlimit"
)

// evictionWarnEvery is how often, at most, a listener warns that it closed
// connections to make room: a flood of connections must not flood the
// log. The counter portvakt_grpc_connections_evicted_total has every one.
const evictionWarnEvery = 10 * time.Second

// limitConnections caps the listener's connections at max, closing the
// longest-idle one when a new one comes at the cap, and shows them in the
// metrics.
func (d *Daemon) limitConnections(name string, lis net.Listener, max int) *connlimit.Listener {
	open := d.metrics.GRPCConnections.WithLabelValues(name)
	evicted := d.metrics.GRPCEvicted.WithLabelValues(name)
	d.metrics.GRPCMaxConnections.WithLabelValues(name).Set(float64(max))
	warn := &evictionWarning{log: d.log, listener: name, max: max}
	return connlimit.New(lis, connlimit.Options{
		Max:     max,
		OnOpen:  open.Inc,
		OnClose: open.Dec,
		OnEvict: func(idle time.Duration) {
			evicted.Inc()
			warn.note(idle, time.Now())
		},
	})
}

// evictionWarning logs evictions at most once per evictionWarnEvery, each
// line saying how many there were since the last.
type evictionWarning struct {
	log      *slog.Logger
	listener string
	max      int

	mu      sync.Mutex
	last    time.Time // of the last line; zero before the first
	closed  int       // evictions not yet logged
	longest time.Duration
}

func (w *evictionWarning) note(idle time.Duration, now time.Time) {
	w.mu.Lock()
	w.closed++
	w.longest = max(w.longest, idle)
	if !w.last.IsZero() && now.Sub(w.last) < evictionWarnEvery {
		w.mu.Unlock()
		return
	}
	closed, longest := w.closed, w.longest
	w.last, w.closed, w.longest = now, 0, 0
	w.mu.Unlock()
	w.log.Warn("closed idle connections to make room for new ones: the listener is at its connection cap (an idle-connection flood, or grpc.max_connections too low for the callers)",
		"listener", w.listener, "max_connections", w.max, "closed", closed, "longest_idle", longest.Round(time.Millisecond).String(),
		"next_line_after", evictionWarnEvery.String())
}

// unwrappedCredentials hands the wrapped credentials the connection the
// listener accepted, for those that need its concrete type: the Unix
// socket's peer credentials need the *net.UnixConn. The connection served
// is still the tracking one, so that its reads are stamped and its close
// frees its place.
type unwrappedCredentials struct {
	credentials.TransportCredentials
}

func (c unwrappedCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tracked, ok := conn.(*connlimit.Conn)
	if !ok {
		return c.TransportCredentials.ServerHandshake(conn)
	}
	raw := tracked.NetConn()
	out, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	if out != raw {
		// Credentials that wrap the connection would have it served past
		// the tracking: refused rather than leaking its place.
		return nil, nil, fmt.Errorf("%s credentials replaced the connection; only pass-through credentials may be unwrapped", c.Info().SecurityProtocol)
	}
	return tracked, info, nil
}

func (c unwrappedCredentials) Clone() credentials.TransportCredentials {
	return unwrappedCredentials{c.TransportCredentials.Clone()}
}
