package daemon

import (
	"errors"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/internal/p11"
)

// hsmStartWait bounds how long the start waits for an HSM that is away for
// the moment. Once running, the daemon rides out an outage of any length
// (signer's supervisor reconnects); at start it has no key to serve with
// yet, so it waits a little and then says why it cannot start, for the
// service manager to try again later.
const hsmStartWait = 10 * time.Second

// hsmStartBackoff spaces the start's attempts; several replicas starting
// together on one network HSM do not retry in step.
var hsmStartBackoff = backoff.Policy{Initial: 250 * time.Millisecond, Max: 2 * time.Second}

// awaitHSM runs open, and again after a back-off while it fails because
// the HSM is away for now: a network HSM whose client is not connected,
// a connection lost, or SoftHSM2 showing its token uninitialised while
// another process rewrites the token's files (measured with replicas
// sealing their audit logs on one token while another starts). Any other
// failure (a wrong PIN, a label none of the tokens present has, a missing
// module) is returned at once, as is the last one after hsmStartWait.
func (d *Daemon) awaitHSM(name string, open func() error) error {
	deadline := time.Now().Add(hsmStartWait)
	for attempt := 1; ; attempt++ {
		err := open()
		if err == nil || !awayForNow(err) {
			return err
		}
		wait := hsmStartBackoff.Delay(attempt)
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		d.log.Warn("the HSM is not reachable at start; trying again", "hsm", name, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "error", err)
		time.Sleep(wait)
	}
}

// awayForNow reports whether err says the HSM is unreachable rather than
// wrongly configured.
func awayForNow(err error) bool {
	if errors.Is(err, p11.ErrTokenNotFound) {
		return errors.Is(err, p11.ErrNoInitialisedToken)
	}
	return p11.Classify(err) == p11.Gone
}
