package daemon

import (
	"context"
	"crypto/x509"
	"math"
	"time"

	"github.com/portvakt/portvakt/internal/backoff"
	"github.com/portvakt/portvakt/tokenservice"
)

// certificateCheckInterval is how often the certificates' expiry is
// looked at while the daemon runs.
const certificateCheckInterval = time.Hour

// watchCertificates warns, in the log and the metrics, when an
// environment's certificate expires within the configured window, and
// says so again at every check until it is renewed.
func (d *Daemon) watchCertificates(ctx context.Context) {
	tick := time.NewTicker(certificateCheckInterval)
	defer tick.Stop()
	for {
		d.checkCertificates(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (d *Daemon) checkCertificates(now time.Time) {
	for _, e := range d.service.Environments() {
		cert := e.Signing().Signer.Certificate()
		next := e.Successor()
		if cert == nil {
			// A registered key (kid alone): no certificate to expire. Its
			// registration's own expiry is Digdir's to tell.
			d.metrics.CertExpiringSoon.WithLabelValues(e.Config.Name).Set(0)
			continue
		}
		soon := 0.0
		state, daysLeft := certificateExpiry(cert, now, d.cfg.Certificates.WarnBefore)
		switch {
		case state == certExpired:
			soon = 1
			d.log.Error("certificate expired: Maskinporten refuses every grant it signs (MP-121); import a renewed one",
				"environment", e.Config.Name, "subject", cert.Subject.CommonName, "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
		case state == certExpiresSoon && next != nil:
			d.log.Info("certificate expires soon; its successor takes over before",
				"environment", e.Config.Name, "subject", cert.Subject.CommonName,
				"not_after", cert.NotAfter.UTC().Format(time.RFC3339), "successor_from", next.At.UTC().Format(time.RFC3339))
		case state == certExpiresSoon:
			soon = 1
			d.log.Warn("certificate expires soon and no successor is in place: order a renewal, import it with `portvakt hsm import-cert`, and set environments[].successor",
				"environment", e.Config.Name, "subject", cert.Subject.CommonName,
				"not_after", cert.NotAfter.UTC().Format(time.RFC3339), "days_left", daysLeft)
		}
		d.metrics.CertExpiringSoon.WithLabelValues(e.Config.Name).Set(soon)
	}
}

// Certificate expiry states, as certificateExpiry tells them.
const (
	certValid = iota
	certExpiresSoon
	certExpired
)

// certificateExpiry says whether cert has expired at now, expires within
// the window (and in how many whole days), or neither.
func certificateExpiry(cert *x509.Certificate, now time.Time, window time.Duration) (state, daysLeft int) {
	left := cert.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return certExpired, 0
	case left <= window:
		return certExpiresSoon, int(math.Floor(left.Hours() / 24))
	}
	return certValid, int(math.Floor(left.Hours() / 24))
}

// registerStateMetrics exposes state kept elsewhere, read at scrape time.
func (d *Daemon) registerStateMetrics() {
	stats := d.service.CacheStats
	d.metrics.CounterFunc("cache_hits_total", "Token requests answered from the cache.", func() float64 { return float64(stats().Hits) })
	d.metrics.CounterFunc("cache_misses_total", "Token requests that waited for a fetch.", func() float64 { return float64(stats().Misses) })
	d.metrics.CounterFunc("cache_refreshes_total", "Tokens refreshed ahead of expiry in the background.", func() float64 { return float64(stats().Refreshes) })
	d.metrics.CounterFunc("cache_refresh_failures_total", "Background refreshes that failed.", func() float64 { return float64(stats().RefreshFailures) })
	d.metrics.CounterFunc("hsm_reconnects_total", "Times an HSM token was re-opened after it went away.", func() float64 {
		var n uint64
		for _, t := range d.tokens {
			n += t.Reconnects()
		}
		return float64(n)
	})
	d.metrics.CounterFunc("audit_records_total", "Audit records appended to the log since start.",
		func() float64 { return float64(d.audit.Stats().Records) })
	d.metrics.CounterFunc("audit_writes_total", "Writes that appended audit records to the log: records over writes is how many records a write carried (group commit).",
		func() float64 { return float64(d.audit.Stats().Writes) })
	d.metrics.GaugeFunc("audit_last_seq", "Sequence number of the last audit record written; keep it (and the hash the daemon logs at shutdown) outside the machine to detect records cut from the end.",
		func() float64 { return float64(d.audit.Stats().LastSeq) })
	for _, e := range d.service.Environments() {
		d.certificateMetrics(e)
	}
}

// certificateMetrics sets the environment's certificate gauges: the one
// signing now and the successor waiting, if any.
func (d *Daemon) certificateMetrics(e *tokenservice.Environment) {
	name := e.Config.Name
	if cert := e.Signing().Signer.Certificate(); cert != nil { // none for a registered key
		d.metrics.CertNotAfter.WithLabelValues(name).Set(float64(cert.NotAfter.Unix()))
	}
	next := e.Successor()
	if next == nil {
		d.metrics.SuccessorNotAfter.DeleteLabelValues(name)
		d.metrics.SuccessorTakeover.DeleteLabelValues(name)
		return
	}
	d.metrics.SuccessorNotAfter.WithLabelValues(name).Set(float64(next.Key.Signer.Certificate().NotAfter.Unix()))
	d.metrics.SuccessorTakeover.WithLabelValues(name).Set(float64(next.At.Unix()))
}

// takeoverBackoff paces a takeover whose audit record could not be
// written: soon, since the audit log mends itself, but not in lockstep
// with the other replicas on the same disk or network HSM.
var takeoverBackoff = backoff.Policy{Initial: time.Second, Max: time.Minute}

// watchSuccessions hands each environment's signing to its successor when
// its time comes, without a restart: grants from then on carry the
// renewed certificate, and a fetch under way finishes with the old one.
func (d *Daemon) watchSuccessions(ctx context.Context) {
	failures := 0 // rounds in a row in which a takeover due failed
	for {
		var first time.Time
		for _, e := range d.service.Environments() {
			if next := e.Successor(); next != nil && (first.IsZero() || next.At.Before(first)) {
				first = next.At
			}
		}
		if first.IsZero() {
			return // none waits; a successor is configured only at start
		}
		wait := time.Until(first)
		if failures > 0 {
			wait = takeoverBackoff.Delay(failures)
		}
		if !sleep(ctx, wait) {
			return
		}
		if d.takeOver(ctx, time.Now()) {
			failures = 0
		} else {
			failures++
		}
	}
}

// takeOver hands every environment whose successor is due at now to it,
// and reports whether every takeover due was made.
func (d *Daemon) takeOver(ctx context.Context, now time.Time) bool {
	ok := true
	for _, e := range d.service.Environments() {
		record := func(next *tokenservice.Succession) error {
			return d.service.RecordTakeover(tokenservice.RenewalContext(ctx), e.Config.Name, next, false)
		}
		next := e.Successor()
		took, err := e.Succeed(now, record)
		switch {
		case err != nil:
			// Not on record, so not taken over: the current certificate
			// signs on, and the next round (after the back-off) tries
			// again; the other environments' takeovers are made meanwhile.
			ok = false
			d.log.Error("the successor certificate could not take over: its audit record was not written; trying again",
				"environment", e.Config.Name, "error", err.Error())
		case took:
			cert := next.Key.Signer.Certificate()
			d.log.Info("the successor certificate takes over signing", "environment", e.Config.Name,
				"subject", cert.Subject.CommonName, "not_after", cert.NotAfter.UTC().Format(time.RFC3339), "key_label", next.Key.Signer.KeyLabel())
			d.certificateMetrics(e)
		}
	}
	return ok
}

// sleep waits d, and reports false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
