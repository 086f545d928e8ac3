// Package connlimit bounds the connections a listener holds open without
// letting idle connections lock new callers out.
//
// A semaphore listener (golang.org/x/net/netutil.LimitListener) stops
// accepting at its cap: whoever opens that many connections and sends
// nothing holds the service until they give up. This listener always
// accepts; when it then holds more than its cap, it closes the connection
// that has been idle longest to make room.
//
// Idle means no bytes read from the peer: each Read that returns data
// stamps the connection, with one atomic store. That is deliberately the
// transport's view: an HTTP/2 client's keepalive pings and its answers to
// the server's pings count as activity, so a live but quiet client looks
// less idle than a socket that never sent anything, or sent a preface and
// went silent. Closing connections that hold no call for long is the
// protocol's business (gRPC's MaxConnectionIdle), not this package's.
package connlimit

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Listener. The hooks are called without the listener's
// lock held, from the goroutine that called Accept or Close.
type Options struct {
	// Max is the number of connections held open; at least 1.
	Max int
	// OnOpen is called for each accepted connection, OnClose once for each
	// that is closed, by its owner or by eviction.
	OnOpen, OnClose func()
	// OnEvict is called for each connection closed to make room, with how
	// long it had read nothing.
	OnEvict func(idle time.Duration)
}

// Listener is a net.Listener holding at most Max connections open.
type Listener struct {
	net.Listener
	opts  Options
	start time.Time // the clock's origin: stamps are monotonic nanoseconds since

	mu    sync.Mutex
	conns map[*Conn]struct{}
}

// New wraps l.
func New(l net.Listener, opts Options) *Listener {
	opts.Max = max(opts.Max, 1)
	return &Listener{Listener: l, opts: opts, start: time.Now(), conns: map[*Conn]struct{}{}}
}

// Max is the cap.
func (l *Listener) Max() int { return l.opts.Max }

// Len is the number of connections open.
func (l *Listener) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Accept takes the next connection and, if that puts the listener over its
// cap, closes the longest-idle of the others.
func (l *Listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &Conn{Conn: nc, l: l}
	c.lastRead.Store(l.now())
	if l.opts.OnOpen != nil {
		l.opts.OnOpen() // before c can be closed: a gauge never goes below zero
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	var victim *Conn
	if len(l.conns) > l.opts.Max {
		victim = l.longestIdleLocked(c)
		delete(l.conns, victim)
	}
	l.mu.Unlock()
	if victim != nil {
		idle := time.Duration(l.now() - victim.lastRead.Load())
		victim.release()
		_ = victim.Conn.Close() // its server goroutine sees the error and cleans up
		if l.opts.OnEvict != nil {
			l.opts.OnEvict(idle)
		}
	}
	return c, nil
}

// longestIdleLocked is the connection other than except that read last
// longest ago. A scan: it runs only at the cap, and a few thousand atomic
// loads cost microseconds, less than the accept itself.
func (l *Listener) longestIdleLocked(except *Conn) *Conn {
	var oldest *Conn
	var oldestRead int64
	for c := range l.conns {
		if c == except {
			continue
		}
		if r := c.lastRead.Load(); oldest == nil || r < oldestRead {
			oldest, oldestRead = c, r
		}
	}
	return oldest
}

func (l *Listener) now() int64 { return int64(time.Since(l.start)) }

// Conn is an accepted connection; it notes when it last read data.
type Conn struct {
	net.Conn
	l        *Listener
	lastRead atomic.Int64 // l.now() at the last Read that returned data
	once     sync.Once
}

// Read reads from the connection and stamps it when data came.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.lastRead.Store(c.l.now())
	}
	return n, err
}

// Close closes the connection and frees its place.
func (c *Conn) Close() error {
	c.release()
	return c.Conn.Close()
}

// NetConn is the connection the listener accepted, for code that needs its
// concrete type (peer credentials of a Unix socket, say). Reads on it are
// not stamped.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Idle is how long the connection has read nothing.
func (c *Conn) Idle() time.Duration { return time.Duration(c.l.now() - c.lastRead.Load()) }

// release removes c from its listener, once.
func (c *Conn) release() {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if c.l.opts.OnClose != nil {
			c.l.opts.OnClose()
		}
	})
}
