package daemon

import (
	"crypto/x509"
	"testing"
	"time"
)

// TestCertificateExpiry: the one judgement of a certificate's end that
// the running daemon's warnings and `serve --check` share.
func TestCertificateExpiry(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	const day, window = 24 * time.Hour, 30 * 24 * time.Hour
	tests := []struct {
		name      string
		left      time.Duration
		wantState int
		wantDays  int
	}{
		{"a year left", 365 * day, certValid, 365},
		{"just outside the window", window + time.Minute, certValid, 30},
		{"the window's edge", window, certExpiresSoon, 30},
		{"9 and a half days left", 9*day + 12*time.Hour, certExpiresSoon, 9},
		{"an hour left", time.Hour, certExpiresSoon, 0},
		{"ends now", 0, certExpired, 0},
		{"ended yesterday", -day, certExpired, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, days := certificateExpiry(&x509.Certificate{NotAfter: now.Add(tt.left)}, now, window)
			if state != tt.wantState || days != tt.wantDays {
				t.Errorf("certificateExpiry = %d, %d days; want %d, %d days", state, days, tt.wantState, tt.wantDays)
			}
		})
	}
}
