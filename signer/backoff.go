package signer

import "github.com/portvakt/portvakt/internal/backoff"

// Backoff paces reconnection to a lost token: Portvakt's one back-off,
// exponential with full jitter. Initial defaults to 100 ms and Max to 30 s
// (capped at the probe interval).
type Backoff = backoff.Policy
