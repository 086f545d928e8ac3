package mpsim

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// Listener serves a handler over HTTP on one TCP address that it keeps
// across Down and Up, so that a test can take the simulated Maskinporten
// away, as an outage does (clients get "connection refused", and calls in
// flight lose their connection), and bring it back where clients expect
// it, without restarting them. The zero value is not usable: make one with
// Listen. Its methods are safe for concurrent use.
type Listener struct {
	addr string

	mu      sync.Mutex
	handler http.Handler
	ln      net.Listener // nil while down
	srv     *http.Server // nil while down or before Serve
	served  chan struct{}
	closed  bool

	// The handlers running, for Down to wait for: counted under a mutex of
	// their own, since a connection closed by Down may still start one.
	activeMu sync.Mutex
	active   int
	idle     *sync.Cond // on activeMu, when active drops to 0
}

// Listen binds addr ("127.0.0.1:0" for a free loopback port); Serve then
// answers on it. Binding first lets a caller learn the address, and so the
// issuer, before building the Server.
func Listen(addr string) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mpsim: listening on %s: %w", addr, err)
	}
	l := &Listener{addr: ln.Addr().String(), ln: ln}
	l.idle = sync.NewCond(&l.activeMu)
	return l, nil
}

// Addr is the address bound, host:port; it stays the same across Down
// and Up.
func (l *Listener) Addr() string { return l.addr }

// URL is "http://" + Addr() + "/", the issuer of a simulator served here.
func (l *Listener) URL() string { return "http://" + l.addr + "/" }

// Serve starts answering with h in the background. It may be called once.
func (l *Listener) Serve(h http.Handler) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return errors.New("mpsim: Serve on a closed Listener")
	case l.handler != nil:
		return errors.New("mpsim: Serve called twice")
	}
	l.handler = h
	if l.ln != nil {
		l.start()
	}
	return nil
}

// start serves on l.ln. l.mu must be held.
func (l *Listener) start() {
	h := l.handler
	l.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.activeMu.Lock()
		l.active++
		l.activeMu.Unlock()
		defer func() {
			l.activeMu.Lock()
			if l.active--; l.active == 0 {
				l.idle.Broadcast()
			}
			l.activeMu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})}
	l.served = make(chan struct{})
	go l.accept(l.srv, l.ln, l.served)
}

// accept is the accept loop of one Up (or of Serve): until Down.
func (l *Listener) accept(srv *http.Server, ln net.Listener, served chan<- struct{}) {
	defer close(served)
	_ = srv.Serve(ln) // http.ErrServerClosed once Down closes it
}

// Down stops listening and closes every connection, those with a request
// in flight too, and waits for the handlers to return (a request delayed
// by Faults.Latency returns at once: its context ends with its
// connection). Until Up, connecting to Addr is refused. Down on a
// Listener that is down does nothing.
func (l *Listener) Down() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down()
}

// down is Down with l.mu held.
func (l *Listener) down() error {
	var err error
	switch {
	case l.srv != nil:
		err = l.srv.Close() // closes l.ln too
		<-l.served
		l.activeMu.Lock()
		for l.active > 0 {
			l.idle.Wait()
		}
		l.activeMu.Unlock()
	case l.ln != nil:
		err = l.ln.Close()
	}
	l.srv, l.ln, l.served = nil, nil, nil
	return err
}

// Up listens on Addr again and serves the same handler. It fails when the
// port has been taken meanwhile. Up on a Listener that is up does nothing.
func (l *Listener) Up() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("mpsim: Up on a closed Listener")
	}
	if l.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("mpsim: listening on %s again: %w", l.addr, err)
	}
	l.ln = ln
	if l.handler != nil {
		l.start()
	}
	return nil
}

// Close is Down for good: Up and Serve fail after it.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.down()
}
