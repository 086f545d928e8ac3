package maskinporten

import (
	"errors"
	"time"
)

// RetryAfter is the Retry-After a refusal carried, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
