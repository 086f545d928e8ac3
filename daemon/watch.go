package daemon

import (
	"context"
	"crypto/x509"
	"math"
	"time"
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
		cert := e.Signer.Certificate()
		if cert == nil {
			// A registered key (kid alone): no certificate to expire. Its
			// registration's own expiry is Digdir's to tell.
			d.metrics.CertExpiringSoon.WithLabelValues(e.Config.Name).Set(0)
			continue
		}
		soon := 0.0
		switch state, daysLeft := certificateExpiry(cert, now, d.cfg.Certificates.WarnBefore); state {
		case certExpired:
			soon = 1
			d.log.Error("certificate expired: Maskinporten refuses every grant it signs (MP-121); import a renewed one",
				"environment", e.Config.Name, "subject", cert.Subject.CommonName, "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
		case certExpiresSoon:
			soon = 1
			d.log.Warn("certificate expires soon: order a renewal and import it with `portvakt hsm import-cert`",
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
	d.metrics.GaugeFunc("audit_last_seq", "Sequence number of the last audit record written; keep it (and the hash the daemon logs at shutdown) outside the machine to detect records cut from the end.",
		func() float64 { return float64(d.audit.Stats().LastSeq) })
	for _, e := range d.service.Environments() {
		if cert := e.Signer.Certificate(); cert != nil { // none for a registered key
			d.metrics.CertNotAfter.WithLabelValues(e.Config.Name).Set(float64(cert.NotAfter.Unix()))
		}
	}
}
