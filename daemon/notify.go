package daemon

// systemd's readiness protocol, for a unit of Type=notify (see
// deploy/systemd/portvakt.service): datagrams to the socket systemd names
// in NOTIFY_SOCKET. Without NOTIFY_SOCKET (not under systemd, or in tests)
// every call here does nothing.
//
//   - READY=1 once Serve has its gRPC servers running on the listeners New
//     opened, so that units ordered After=portvakt.service find the socket
//     answering.
//   - STOPPING=1 when shutdown starts (SIGTERM, or Serve's context ends).
//   - RELOADING=1 with MONOTONIC_USEC, then READY=1, around the policy
//     reload SIGHUP asks for (ExecReload=/bin/kill -HUP $MAINPID): the
//     policy's and the mutual-TLS files'. The
//     MONOTONIC_USEC is what Type=notify-reload (systemd 253 and later)
//     wants; the unit stays Type=notify so that it loads on older systemd.
//     Reloads the policy file's watcher makes are not reported: systemd
//     did not ask for them.
//   - WATCHDOG=1 every half of WATCHDOG_USEC (WatchdogSec=) from READY
//     until the servers have stopped. The ping says the process is alive
//     and its Serve loop running, no more: an HSM outage or an audit log
//     that takes no record show in gRPC health and the metrics, and
//     restarting would not cure them, while it would throw away the token
//     cache that keeps callers served through an outage.

import (
	"fmt"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notify sends the states to systemd in one datagram.
func (d *Daemon) notify(states ...string) {
	// false: NOTIFY_SOCKET stays set, for the later messages.
	if _, err := sd.SdNotify(false, strings.Join(states, "\n")); err != nil {
		d.log.Warn("could not notify systemd", "state", states[0], "error", err.Error())
	}
}

// notifyReady tells systemd the daemon serves.
func (d *Daemon) notifyReady(status string) {
	d.notify(sd.SdNotifyReady, "STATUS="+status)
}

// notifyStopping tells systemd the shutdown has started.
func (d *Daemon) notifyStopping() {
	d.notify(sd.SdNotifyStopping, "STATUS=stopping: letting the calls in flight finish")
}

// reloadNotified reloads the policy and the mutual-TLS files between
// RELOADING=1 and READY=1.
func (d *Daemon) reloadNotified() {
	d.notify(sd.SdNotifyReloading, monotonicUsec(), "STATUS=reloading the policy and the TLS files")
	status := "serving"
	if err := d.policies.Reload(); err != nil { // logs its own outcome
		status = "serving; the policy reload failed and the policy before stays in force (see the log)"
	}
	if err := d.tls.reload(); err != nil { // logs and counts its own outcome
		status = "serving; the TLS reload failed and the certificates before stay in force (see the log)"
	}
	d.notifyReady(status)
}

// monotonicUsec is CLOCK_MONOTONIC as MONOTONIC_USEC=, which systemd
// matches against the time it sent SIGHUP.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "MONOTONIC_USEC=0"
	}
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}

// startWatchdog pings systemd's watchdog at half its interval until the
// returned stop is called; when systemd wants no watchdog it does
// nothing.
func (d *Daemon) startWatchdog() (stop func()) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		d.log.Warn("systemd's watchdog settings are unreadable; not pinging it", "error", err.Error())
	}
	if interval <= 0 {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(interval / 2)
		defer tick.Stop()
		d.notify(sd.SdNotifyWatchdog)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				d.notify(sd.SdNotifyWatchdog)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
