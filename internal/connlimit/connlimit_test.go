package connlimit_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portvakt/portvakt/internal/connlimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counts are what the hooks saw.
type counts struct {
	open, closed, evicted atomic.Int64
	mu                    sync.Mutex
	idle                  []time.Duration
}

func listen(t *testing.T, max int) (*connlimit.Listener, *counts) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &counts{}
	l := connlimit.New(inner, connlimit.Options{
		Max:     max,
		OnOpen:  func() { n.open.Add(1) },
		OnClose: func() { n.closed.Add(1) },
		OnEvict: func(idle time.Duration) {
			n.evicted.Add(1)
			n.mu.Lock()
			n.idle = append(n.idle, idle)
			n.mu.Unlock()
		},
	})
	t.Cleanup(func() { _ = l.Close() })
	return l, n
}

// pair dials the listener and accepts: the client's end and the server's.
func pair(t *testing.T, l net.Listener) (client, server net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}

// roundTrip sends a byte from client to server and back, failing the test
// if either way is closed.
func roundTrip(t *testing.T, client, server net.Conn) {
	t.Helper()
	b := []byte{1}
	if _, err := client.Write(b); err != nil {
		t.Fatalf("client write: %v", err)
	}
	if _, err := io.ReadFull(server, b); err != nil {
		t.Fatalf("server read: %v", err)
	}
	if _, err := server.Write(b); err != nil {
		t.Fatalf("server write: %v", err)
	}
	if _, err := io.ReadFull(client, b); err != nil {
		t.Fatalf("client read: %v", err)
	}
}

// assertClosedByServer checks that the client's end sees the server close.
func assertClosedByServer(t *testing.T, client net.Conn) {
	t.Helper()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard
	_, err := client.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("client read on an evicted connection: %v, want EOF", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// TestEvictsLongestIdle: at the cap, a new connection is accepted and the
// one that has read nothing for longest is closed; one that has been
// reading is kept, and so is the new one.
func TestEvictsLongestIdle(t *testing.T) {
	l, n := listen(t, 2)
	activeC, activeS := pair(t, l)
	idleC, _ := pair(t, l)
	roundTrip(t, activeC, activeS) // older, but it read after idle was accepted

	newC, newS := pair(t, l)
	assertClosedByServer(t, idleC)
	roundTrip(t, activeC, activeS)
	roundTrip(t, newC, newS)
	if got := l.Len(); got != 2 {
		t.Fatalf("%d connections held, want the cap, 2", got)
	}
	if n.open.Load() != 3 || n.closed.Load() != 1 || n.evicted.Load() != 1 {
		t.Fatalf("hooks saw %d opened, %d closed, %d evicted; want 3, 1, 1", n.open.Load(), n.closed.Load(), n.evicted.Load())
	}
	if n.idle[0] <= 0 {
		t.Fatalf("evicted connection idle for %v", n.idle[0])
	}

	// The active one has gone idle in its turn; the new one read last.
	_, _ = pair(t, l)
	assertClosedByServer(t, activeC)
	roundTrip(t, newC, newS)
}

// TestCloseFreesPlace: a connection its owner closes leaves the count,
// once, however often it is closed; no room is then made by eviction.
func TestCloseFreesPlace(t *testing.T) {
	l, n := listen(t, 2)
	aC, aS := pair(t, l)
	bC, bS := pair(t, l)
	_ = aS.Close()
	_ = aS.Close()
	assertClosedByServer(t, aC)
	cC, cS := pair(t, l)
	roundTrip(t, bC, bS)
	roundTrip(t, cC, cS)
	if l.Len() != 2 || n.closed.Load() != 1 || n.evicted.Load() != 0 {
		t.Fatalf("%d held, %d closed, %d evicted; want 2, 1, 0", l.Len(), n.closed.Load(), n.evicted.Load())
	}
}

// TestCapOfOne: the newest connection is never the one evicted.
func TestCapOfOne(t *testing.T) {
	l, n := listen(t, 0) // raised to 1
	firstC, _ := pair(t, l)
	secondC, secondS := pair(t, l)
	assertClosedByServer(t, firstC)
	roundTrip(t, secondC, secondS)
	if l.Max() != 1 || n.evicted.Load() != 1 {
		t.Fatalf("max %d, %d evicted; want 1, 1", l.Max(), n.evicted.Load())
	}
}

// TestFloodKeepsBusyConnection: while many connections are opened and left
// idle, one that keeps reading is never evicted, and the listener never
// holds more than its cap. Run with -race: reads stamp while Accept scans.
func TestFloodKeepsBusyConnection(t *testing.T) {
	const max = 8
	l, n := listen(t, max)
	busyC, busyS := pair(t, l)

	done := make(chan struct{})
	echoed := make(chan error, 1)
	go func() {
		// The server's side echoes until the client's side stops.
		_, err := io.Copy(busyS, busyS)
		echoed <- err
	}()
	go func() {
		defer close(done)
		for range 200 {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	accepted := 0
	for accepted < 200 {
		// Keep the busy connection reading between accepts.
		roundTripEcho(t, busyC)
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		accepted++
		if got := l.Len(); got > max {
			t.Fatalf("%d connections held, over the cap %d", got, max)
		}
	}
	<-done
	roundTripEcho(t, busyC)
	if got := n.evicted.Load(); got != 201-max {
		t.Fatalf("%d evicted, want %d", got, 201-max)
	}
	_ = busyC.Close()
	if err := <-echoed; err != nil {
		t.Fatalf("the busy connection's server side: %v", err)
	}
}

func roundTripEcho(t *testing.T, c net.Conn) {
	t.Helper()
	b := []byte{7}
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write on the busy connection: %v", err)
	}
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("the busy connection was closed: %v", err)
	}
}
