package daemon

import (
	"os"
	"runtime/debug"
)

// ApplyMemoryLimit sets the Go runtime's soft memory limit to the
// configuration's memory_limit (bytes), unless the GOMEMLIMIT environment
// variable is set: the runtime has applied that one at start, and an
// operator's environment wins over the file. It returns the limit in
// force and where it came from ("GOMEMLIMIT" or "memory_limit"), for the
// start's log. `portvakt serve` calls it once, before the daemon starts;
// it changes the whole process, so a daemon in a test's process leaves it
// alone.
func ApplyMemoryLimit(limit int64) (inForce int64, from string) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT" // -1 reads it
	}
	debug.SetMemoryLimit(limit)
	return limit, "memory_limit"
}
