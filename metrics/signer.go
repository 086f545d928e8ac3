package metrics

import "time"

// ObserveSign times an HSM signature and counts the failures: the
// signer's ObserveSign.
func (m *Metrics) ObserveSign(d time.Duration, err error) {
	m.HSMSignSeconds.Observe(d.Seconds())
	if err != nil {
		m.HSMErrors.Inc()
	}
}
