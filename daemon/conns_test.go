package daemon_test

import (
	"context"
	byteorder "encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// http2Preface is what an HTTP/2 client sends first: the connection
// preface and an empty SETTINGS frame. After it the gRPC server holds the
// connection as set up, waiting for streams.
var http2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// floodConns opens n connections to the address and leaves them idle,
// after the HTTP/2 preface when preface is set, else with nothing sent.
// They are closed at the end of the test.
func floodConns(t *testing.T, network, address string, n int, preface bool) {
	t.Helper()
	for range n {
		c, err := net.Dial(network, address)
		if err != nil {
			t.Fatalf("flood connection to %s: %v", address, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if preface {
			if _, err := c.Write(http2Preface); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// processAddress is where the latest daemon process of e listens, by the
// listener's name, as its start line says.
func processAddress(t *testing.T, e *env, name string) string {
	t.Helper()
	for _, l := range processLog(t, e) {
		if a, ok := l["addresses"].(map[string]any); ok && l["msg"] == "portvakt started" {
			if addr, _ := a[name].(string); addr != "" {
				return addr
			}
		}
	}
	t.Fatalf("the daemon's log names no %s address", name)
	return ""
}

// TestIdleConnectionFlood: a daemon process allowed 256 file descriptors
// (soft and hard, so it cannot raise them) is sent 100 raw TCP
// connections that never start TLS and 300 Unix connections that complete
// the HTTP/2 preface, all then left idle. A new caller must still get an
// answer on the socket and a token over mutual TLS: the listeners close
// the longest-idle connections to make room, count them and warn (a few
// lines, not one per connection), rather than running out of descriptors
// and locking everyone out.
//
// With the defaults, grpc.max_connections (1024 on each of two listeners)
// does not fit 256 descriptors: the daemon says so and caps each listener
// at (256-64)/2 = 96. Configured lower, the configured cap holds.
func TestIdleConnectionFlood(t *testing.T) {
	for _, tt := range []struct {
		name     string
		setting  string // in the grpc block
		cap      int
		fitWarns bool
	}{
		{"capped to fit the descriptors", "", 96, true},
		{"configured cap", "max_connections: 40", 40, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := mptest.New(t, mptest.Options{})
			e := prepare(t, w)
			if tt.setting != "" {
				e.edit(t, withGRPC(tt.setting))
			}
			p := startProcessLimited(t, e, processLimits{openFiles: 256})
			tcp := processAddress(t, e, "tcp")

			floodConns(t, "tcp", tcp, 100, false)
			floodConns(t, "unix", p.socket, 300, true)

			// A hang guard, not a speed claim: without room for it, the
			// new caller's connection waits in the listen queue for ever.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			c := dial(t, client.Options{Socket: p.socket})
			who, err := c.API().WhoAmI(ctx, &portvaktv1.WhoAmIRequest{})
			if err != nil {
				t.Fatalf("WhoAmI on the socket after an idle flood: %v", err)
			}
			if who.GetClient() != "billing" {
				t.Fatalf("WhoAmI = %v, want the billing client", who)
			}
			m := dial(t, client.Options{Address: tcp, CertFile: e.clientCert, KeyFile: e.clientKey, CAFile: filepath.Join(e.dir, "ca.pem")})
			if _, err := m.API().GetToken(ctx, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
				t.Fatalf("GetToken over mutual TLS after an idle flood: %v", err)
			}

			metric := processMetrics(t, e)
			unix := map[string]string{"listener": "unix"}
			evicted := metric("portvakt_grpc_connections_evicted_total", unix)
			if evicted < float64(300-tt.cap) {
				t.Errorf("%v Unix connections evicted, want at least %d", evicted, 300-tt.cap)
			}
			if got := metric("portvakt_grpc_connections_evicted_total", map[string]string{"listener": "tcp"}); got < 1 {
				t.Errorf("%v TCP connections evicted, want some: 100 came at a cap of %d", got, tt.cap)
			}
			for _, l := range []string{"unix", "tcp"} {
				if got := metric("portvakt_grpc_max_connections", map[string]string{"listener": l}); got != float64(tt.cap) {
					t.Errorf("portvakt_grpc_max_connections{listener=%q} = %v, want %d", l, got, tt.cap)
				}
				if got := metric("portvakt_grpc_connections", map[string]string{"listener": l}); got < 1 || got > float64(tt.cap) {
					t.Errorf("portvakt_grpc_connections{listener=%q} = %v, want 1..%d", l, got, tt.cap)
				}
			}

			var limitLine, fitWarning map[string]any
			evictionLines, logged := 0, 0.0
			for _, l := range processLog(t, e) {
				switch msg, _ := l["msg"].(string); {
				case msg == "file descriptor limit":
					limitLine = l
				case strings.HasPrefix(msg, "the file descriptor limit is too low"):
					fitWarning = l
				case strings.HasPrefix(msg, "closed idle connections to make room") && l["listener"] == "unix":
					evictionLines++
					logged += l["closed"].(float64)
				}
			}
			if limitLine == nil || limitLine["soft"] != 256.0 || limitLine["hard"] != 256.0 {
				t.Errorf("file descriptor limit logged as %v, want soft and hard 256", limitLine)
			}
			if (fitWarning != nil) != tt.fitWarns {
				t.Errorf("warning that the limit is too low for grpc.max_connections: %v, want one: %v", fitWarning, tt.fitWarns)
			}
			if tt.fitWarns && (fitWarning["capped_to"] != float64(tt.cap) || !strings.Contains(fitWarning["fix"].(string), "grpc.max_connections to 96")) {
				t.Errorf("the warning says %v", fitWarning)
			}
			// Not one line per eviction: the lines carry the count.
			if evictionLines < 1 || float64(evictionLines) > evicted/20 || logged > evicted {
				t.Errorf("%d warnings of evictions on the socket, together saying %v of %v", evictionLines, logged, evicted)
			}
			t.Logf("%v Unix connections evicted, warned about in %d lines; daemon %s", evicted, evictionLines, processRSS(t, p))
		})
	}
}

// processRSS is the daemon process's resident memory, as /proc says.
func processRSS(t *testing.T, p *process) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return "RSS unknown: " + err.Error()
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rss, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return "RSS " + strings.TrimSpace(rss)
		}
	}
	return "RSS unknown"
}

// withGRPC sets the grpc block's settings beyond the shutdown grace.
func withGRPC(settings string) func(string) string {
	return func(c string) string {
		return strings.Replace(c, "grpc: {shutdown_grace: 10s}", "grpc: {shutdown_grace: 10s, "+settings+"}", 1)
	}
}

// unixConnections is the daemon's gauge of its socket's connections.
func unixConnections(t *testing.T, e *env) float64 {
	t.Helper()
	return metric(t, e, "portvakt_grpc_connections", map[string]string{"listener": "unix"})
}

// TestIdleConnectionClosed: a connection that has had no call for
// grpc.max_connection_idle is closed by the daemon (the client sees its
// connection leave READY, and the daemon's gauge drops to zero); the
// client then reconnects by itself on its next call.
func TestIdleConnectionClosed(t *testing.T) {
	// Registered first, so it runs last: after the daemon has stopped.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w, withGRPC("max_connection_idle: 300ms"))
	conn := connOf(t, e)
	health := healthpb.NewHealthClient(conn)
	if _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := unixConnections(t, e); got != 1 {
		t.Fatalf("%v connections on the socket after one call, want 1", got)
	}

	// A hang guard, not a speed claim.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for conn.GetState() == connectivity.Ready {
		if !conn.WaitForStateChange(ctx, connectivity.Ready) {
			t.Fatal("the idle connection was never closed")
		}
	}
	waitFor(t, "the daemon to count the connection closed", func() bool { return unixConnections(t, e) == 0 })

	if _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a call after the idle close: %v", err)
	}
}

// TestDeadPeerClosed: a connection that completed the HTTP/2 preface and
// then answers nothing, not even the daemon's pings, is closed once the
// ping's answer is keepalive_timeout late, long before max_connection_idle.
func TestDeadPeerClosed(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w, withGRPC("max_connection_idle: 1h, keepalive_time: 1s, keepalive_timeout: 1s"))
	c := dialPreface(t, e)
	// Read what the daemon sends (its settings, its pings) without ever
	// answering, until it closes. A hang guard, not a speed claim.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the silent peer's connection was not closed: %v", err)
	}
	waitFor(t, "the daemon to count the connection closed", func() bool { return unixConnections(t, e) == 0 })
}

// TestMaxConcurrentStreamsAdvertised: the daemon tells each client, in its
// HTTP/2 settings, how many calls it may have in flight on a connection.
func TestMaxConcurrentStreamsAdvertised(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w, withGRPC("max_concurrent_streams: 7"))
	c := dialPreface(t, e)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hang guard
	// The server's first frame is its SETTINGS: a 9-byte header (length,
	// type 4, flags, stream 0), then 6 bytes a setting (id, value).
	header := make([]byte, 9)
	if _, err := io.ReadFull(c, header); err != nil {
		t.Fatal(err)
	}
	length := int(header[0])<<16 | int(header[1])<<8 | int(header[2])
	if header[3] != 4 || length%6 != 0 {
		t.Fatalf("first frame from the daemon: %x, want SETTINGS", header)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(body); i += 6 {
		id := byteorder.BigEndian.Uint16(body[i:])
		if v := byteorder.BigEndian.Uint32(body[i+2:]); id == 3 { // SETTINGS_MAX_CONCURRENT_STREAMS
			if v != 7 {
				t.Fatalf("max concurrent streams advertised: %d, want 7", v)
			}
			return
		}
	}
	t.Fatalf("the daemon's settings %x bound no streams", body)
}

// dialPreface connects to the daemon's socket and sends the HTTP/2 client
// preface, and nothing more.
func dialPreface(t *testing.T, e *env) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", e.daemon.Addresses()["unix"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Write(http2Preface); err != nil {
		t.Fatal(err)
	}
	return c
}
