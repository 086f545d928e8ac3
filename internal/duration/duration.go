// Package duration reads the one duration syntax Portvakt accepts, in its
// configuration and on its command line: Go's (300ms, 1.5h, 2h45m) plus
// whole or fractional days (d) and weeks (w), such as 30d or 1d12h.
// Certificates, audit retention and log queries are thought of in days,
// and time.ParseDuration has no unit for them.
package duration

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Day and Week are the units time lacks: always 24 and 168 hours (no
// calendar, no daylight saving).
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// Units is the list of units, for messages.
const Units = "ns, us, ms, s, m, h, d (days), w (weeks)"

// Example is how messages show the syntax.
const Example = "30s, 5m, 12h or 30d"

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("not a duration")

// Parse reads a duration: an optional sign, then one or more numbers each
// with its unit, such as 30d, 1d12h, 90s or -5m; "0" alone needs no unit.
// Errors name the text (a duration is never secret) and wrap ErrSyntax.
func Parse(s string) (time.Duration, error) {
	d, err := parse(s)
	if err != nil {
		return 0, fmt.Errorf("%q is %w: %v; write a number and a unit (%s), such as %s", s, ErrSyntax, err, Units, Example)
	}
	return d, nil
}

func parse(s string) (time.Duration, error) {
	rest, neg := s, false
	if r, ok := strings.CutPrefix(rest, "-"); ok {
		rest, neg = r, true
	} else if r, ok := strings.CutPrefix(rest, "+"); ok {
		rest = r
	}
	if rest == "" {
		return 0, errors.New("it is empty")
	}
	if rest == "0" {
		return 0, nil
	}
	// Days and weeks are taken out and counted here; what remains (in
	// order, such as the 12h of 1d12h) is Go's syntax and read by it.
	var total time.Duration
	var goPart strings.Builder
	sawDays := false
	for rest != "" {
		n := len(rest) - len(strings.TrimLeft(rest, "0123456789."))
		if n == 0 {
			return 0, fmt.Errorf("expected a number at %q", rest)
		}
		number := rest[:n]
		rest = rest[n:]
		u := len(rest) - len(strings.TrimLeft(rest, "abcdefghijklmnopqrstuvwxyzµμ"))
		if u == 0 {
			return 0, fmt.Errorf("the number %s has no unit", number)
		}
		unit := rest[:u]
		rest = rest[u:]
		var scale time.Duration
		switch unit {
		case "d":
			scale = 24
		case "w":
			scale = 7 * 24
		default:
			goPart.WriteString(number + unit)
			continue
		}
		sawDays = true
		hours, err := time.ParseDuration(number + "h")
		if err != nil {
			return 0, fmt.Errorf("the number %s is not one", number)
		}
		if hours > math.MaxInt64/scale {
			return 0, errors.New("it is too long")
		}
		if total, err = add(total, hours*scale); err != nil {
			return 0, err
		}
	}
	if !sawDays {
		// Go's syntax alone: read by Go as written, so that both agree
		// even on -9223372036854775808ns, whose magnitude does not fit.
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New(strings.TrimPrefix(err.Error(), "time: "))
		}
		return d, nil
	}
	if goPart.Len() > 0 {
		d, err := time.ParseDuration(goPart.String())
		if err != nil {
			return 0, errors.New(strings.TrimPrefix(err.Error(), "time: "))
		}
		if total, err = add(total, d); err != nil {
			return 0, err
		}
	}
	if neg {
		total = -total
	}
	return total, nil
}

// add sums two non-negative durations, refusing what does not fit in a
// time.Duration (about 292 years).
func add(a, b time.Duration) (time.Duration, error) {
	if a > math.MaxInt64-b {
		return 0, errors.New("it is too long")
	}
	return a + b, nil
}

// Format writes d in the syntax Parse reads, with days where they make it
// shorter to read (30d rather than 720h0m0s).
func Format(d time.Duration) string {
	if d != 0 && d%Day == 0 && d != math.MinInt64 {
		if d%Week == 0 {
			return fmt.Sprintf("%dw", d/Week)
		}
		return fmt.Sprintf("%dd", d/Day)
	}
	return d.String()
}
