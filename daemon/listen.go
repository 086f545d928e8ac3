package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/tokenservice"
)

// listen opens the configured listeners and a gRPC server on each, each
// listener holding at most grpc.max_connections (lowered to fit the file
// descriptor limit, which is raised first).
func (d *Daemon) listen() error {
	listeners := 0
	if d.cfg.Listen.Unix != nil {
		listeners++
	}
	if d.cfg.Listen.TCP != nil {
		listeners++
	}
	maxConns := d.fitConnections(listeners)
	if u := d.cfg.Listen.Unix; u != nil {
		lis, err := listenUnix(u.Path, u.Mode, u.Group)
		if err != nil {
			return err
		}
		d.addServer("unix", d.limitConnections("unix", lis, maxConns), unwrappedCredentials{identity.UnixCredentials()})
	}
	if t := d.cfg.Listen.TCP; t != nil {
		creds := insecure.NewCredentials()
		if !t.Insecure {
			var err error
			if d.tls, err = newTLSReloader(t, d.log, d.metrics); err != nil {
				return err
			}
			creds = identity.TLSCredentials(credentials.NewTLS(d.tls.serverConfig()))
		}
		lis, err := net.Listen("tcp", t.Address)
		if err != nil {
			return fmt.Errorf("listen.tcp.address: %w", err)
		}
		d.addServer("tcp", d.limitConnections("tcp", lis, maxConns), creds)
	}
	return d.listenHealth()
}

// The per-connection sizes of the gRPC servers (see addServer).
const (
	connReadBuffer  = 8 << 10
	connWriteBuffer = 8 << 10
	// streamWindow is HTTP/2's smallest window that gRPC accepts: room
	// for the largest request (grpc.max_recv_bytes' default) of a call.
	streamWindow = 64 << 10
	// connWindow leaves room for every stream of a connection to send a
	// small request at once without waiting for a window update.
	connWindow = 256 << 10
	// maxHeaderListBytes bounds a call's metadata (traceparent, request
	// id, user agent): a few hundred bytes in practice.
	maxHeaderListBytes = 16 << 10
	// streamWorkers is how many calls of a server run at once on kept
	// goroutines: a few times the concurrent callers of a busy host's
	// services. One per CPU, as grpc-go suggests, left most of 16
	// concurrent calls on new goroutines (TestConcurrentCallsRunOnWorkers);
	// an idle worker costs a small stack, which the GC shrinks.
	streamWorkers = 64
)

func (d *Daemon) addServer(name string, lis net.Listener, creds credentials.TransportCredentials) {
	g := d.cfg.GRPC
	srv := grpc.NewServer(
		grpc.Creds(creds),
		tokenservice.ServerOption(),
		grpc.MaxRecvMsgSize(g.MaxRecvBytes),
		// A connection that has not finished its handshake and HTTP/2
		// preface by then is closed.
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(uint32(g.MaxConcurrentStreams)), // validated to fit
		// What each connection holds, sized for small messages (requests
		// under 1 KiB, answers of 1-2 KiB) rather than gRPC's bulk-transfer
		// defaults, so that memory follows the calls rather than the
		// connections.
		grpc.ReadBufferSize(connReadBuffer),
		grpc.WriteBufferSize(connWriteBuffer),
		grpc.SharedWriteBuffer(true), // an idle connection gives its write buffer back
		// Static flow-control windows: gRPC's default grows them with the
		// estimated bandwidth-delay product, up to megabytes a connection,
		// for streams that never carry more than a few kilobytes.
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		// Clients may ping every 10 s, with or without a call in flight;
		// more often is answered with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// A connection with no call for this long is closed (GOAWAY);
			// its client reconnects when it calls again.
			MaxConnectionIdle: g.MaxConnectionIdle,
			// A connection silent this long is pinged, and closed when the
			// answer does not come in Timeout: a peer that died without
			// closing (a lost VM, a cut network) does not keep its place.
			Time:    g.KeepaliveTime,
			Timeout: g.KeepaliveTimeout,
			// No MaxConnectionAge: callers reach the daemon on the same
			// host (the socket) or straight over mutual TLS, not through
			// an L7 balancer that a periodic reconnect would rebalance;
			// and each forced reconnect would cost a TLS handshake and
			// race the calls starting on the old connection.
		}),
		// Outermost the per-method metrics (go-grpc-middleware's provider),
		// so that they see the code the request interceptor made of a panic.
		// (Innermost, only in bench/e2e's floor build: benchfloor.go.)
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{d.metrics.GRPCServer.UnaryServerInterceptor(), d.requestInterceptor(name)}, floorInterceptors()...)...),
		// Calls run on goroutines kept for them (streamWorkers), whose
		// stacks have grown to what a call needs, rather than each on a new
		// goroutine that grows its stack (copying it) on the way to the
		// audit record: on the cached path that copy was a seventh of a
		// GetToken's CPU. When all are busy a call gets a goroutine of its
		// own, as without them.
		grpc.NumStreamWorkers(streamWorkers),
		d.tracingOption(),
	)
	d.registerServices(srv)
	d.metrics.GRPCServer.InitializeMetrics(srv) // every method's series at 0 from the start
	d.servers = append(d.servers, &server{name: name, grpc: srv, listener: lis})
}

// listenUnix opens the socket with its permission and group set before
// anyone can connect: the socket is made in a private temporary name,
// chmod-ed and chown-ed, then renamed into place.
func listenUnix(path, modeText, group string) (net.Listener, error) {
	mode, err := strconv.ParseUint(modeText, 8, 32)
	if err != nil {
		return nil, fmt.Errorf("listen.unix.mode %q: %w", modeText, err)
	}
	gid := -1 // unchanged
	if group != "" {
		if gid, err = lookupGroup(group); err != nil {
			return nil, err
		}
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen.unix.path: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	_ = os.Remove(tmp)
	lis, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen.unix.path: %w", err)
	}
	ul := lis.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the socket is renamed; Close must not unlink the old name
	if err := os.Chmod(tmp, fs.FileMode(mode)); err != nil {
		_ = lis.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("listen.unix.mode: %w", err)
	}
	if err := chownGroup(tmp, gid); err != nil {
		_ = lis.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("listen.unix.group %s: %w (the daemon must be a member of the group)", group, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = lis.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("listen.unix.path: %w", err)
	}
	return &renamedUnixListener{Listener: lis, path: path}, nil
}

func chownGroup(path string, gid int) error {
	if gid < 0 {
		return nil
	}
	return os.Lchown(path, -1, gid)
}

// lookupGroup is the gid of a group given by name or number.
func lookupGroup(group string) (int, error) {
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("listen.unix.group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}

// renamedUnixListener reports the socket's final path as its address.
type renamedUnixListener struct {
	net.Listener
	path string
}

func (l *renamedUnixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// removeStaleSocket removes a socket left by a daemon that died, and
// refuses to remove anything else, or a socket someone still serves.
func removeStaleSocket(path string) error {
	stale, err := inspectSocket(path)
	if err != nil || !stale {
		return err
	}
	return os.Remove(path)
}

// errSocketInUse is inspectSocket's error for a socket someone serves.
var errSocketInUse = errors.New("in use by another process (is Portvakt already running?)")

// inspectSocket looks at what is at the socket's path, changing nothing:
// nothing (false), a stale socket that listenUnix may remove (true), or
// an error for anything else, wrapping errSocketInUse for a socket that
// answers.
func inspectSocket(path string) (stale bool, err error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listen.unix.path: %w", err)
	}
	if info.Mode()&fs.ModeSocket == 0 {
		return false, fmt.Errorf("listen.unix.path %s exists and is not a socket; remove it or choose another path", path)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = conn.Close()
		return false, fmt.Errorf("listen.unix.path %s is %w", path, errSocketInUse)
	}
	return true, nil
}
