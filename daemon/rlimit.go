package daemon

import (
	"fmt"
	"syscall"
)

// fdReserve is the file descriptors counted for everything but the gRPC
// connections: the HSM modules and their sessions (a network HSM holds
// sockets), the audit files, the HTTP client to Maskinporten, the metrics
// listener and its scrapers, the policy watch, the listeners themselves.
const fdReserve = 64

// raiseFileLimit raises the soft limit on open files to the hard limit.
//
// Go (1.19 on) already raises the soft limit to one below the hard limit
// when the process starts (syscall's init, go.dev/issue/46279), leaving it
// alone when soft and hard are set equal. Doing it here anyway says in the
// daemon what it relies on, and the result is logged where an operator
// looks for it. (Processes started after it inherit the raised limit,
// not the original one: the daemon starts none.) It returns the limits in
// force.
func raiseFileLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return lim.Cur, lim.Max, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
		lim = raised
	}
	return lim.Cur, lim.Max, nil
}

// connectionCap is the connections each of the listeners may hold so that
// all of them, and the reserve, fit under the soft limit: the configured
// number when it fits, else as many as do (at least one, so that the
// daemon still answers).
func connectionCap(configured, listeners int, soft uint64) int {
	if listeners == 0 || uint64(configured)*uint64(listeners)+fdReserve <= soft {
		return configured
	}
	fit := (int64(soft) - fdReserve) / int64(listeners)
	return int(max(fit, 1))
}

// fitConnections raises the file limit, logs it, and returns the cap on
// each listener's connections: grpc.max_connections, lowered with a
// warning saying what to change when the limit is too low for it. A low
// hard limit does not stop the start: the daemon serves fewer connections
// at once, and the cap keeps it from running out of descriptors.
func (d *Daemon) fitConnections(listeners int) int {
	configured := d.cfg.GRPC.MaxConnections
	soft, hard, err := raiseFileLimit()
	if err != nil {
		d.log.Warn("could not raise the file descriptor limit to its hard limit", "error", err.Error())
		if soft == 0 {
			return configured // unknown: cap as configured
		}
	}
	d.log.Info("file descriptor limit", "soft", soft, "hard", hard)
	limit := connectionCap(configured, listeners, soft)
	if limit < configured {
		need := uint64(configured)*uint64(listeners) + fdReserve
		d.log.Warn("the file descriptor limit is too low for grpc.max_connections on every listener: each listener holds fewer connections",
			"max_connections", configured, "listeners", listeners, "reserve", fdReserve, "soft", soft, "hard", hard, "capped_to", limit,
			"fix", fmt.Sprintf("raise the open-files limit to at least %d (LimitNOFILE= in the systemd unit, ulimit -n), or set grpc.max_connections to %d or less", need, limit))
	}
	return limit
}
