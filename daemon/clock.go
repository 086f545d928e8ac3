package daemon

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/portvakt/portvakt/maskinporten"
)

// The host's clock is warned about when it is more than clockWarnAt off
// Maskinporten's, once each time it gets there, and the all-clear logged
// when it is back under clockClearAt: a second lower, Date's resolution,
// so that an offset hovering at 5 s does not log on every answer.
const (
	clockWarnAt  = 5 * time.Second
	clockClearAt = clockWarnAt - time.Second
)

// newClock is an environment's estimate of Maskinporten's clock: its
// grants are made on it, every answer sets
// portvakt_maskinporten_clock_offset_seconds, and a host clock far off
// Maskinporten's is warned about. Nothing is asked of Maskinporten for
// it: it learns from the answers to the grants.
func (d *Daemon) newClock(env string) *maskinporten.Clock {
	threshold := d.cfg.Maskinporten.ClockThreshold
	var warned atomic.Bool
	return maskinporten.NewClock(maskinporten.ClockOptions{
		Threshold: threshold,
		OnObserve: func(offset time.Duration) {
			d.metrics.ClockOffset.WithLabelValues(env).Set(offset.Seconds())
			off := offset.Abs()
			switch {
			case off > clockWarnAt && warned.CompareAndSwap(false, true):
				follow := "grants follow Maskinporten's clock"
				if off <= threshold {
					follow = fmt.Sprintf("grants keep the host's clock (maskinporten.clock_threshold is %s)", threshold)
				}
				d.log.Warn(fmt.Sprintf("the host's clock is %.0f s off Maskinporten's; %s, but fix the host's time (NTP)", off.Seconds(), follow),
					"environment", env, "offset_seconds", offset.Seconds())
			case off < clockClearAt && warned.CompareAndSwap(true, false):
				d.log.Info(fmt.Sprintf("the host's clock is back within %.0f s of Maskinporten's", clockClearAt.Seconds()),
					"environment", env, "offset_seconds", offset.Seconds())
			}
		},
	})
}
