//go:build unix

package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// lockLog takes an exclusive lock on path (created when missing) and holds
// it until the returned Closer is closed. Two writers on one log would
// fork its chain, and each would cut off the other's records when
// undoing a failed write.
func lockLog(path string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the log: %w", err)
	}
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the log: %w", err)
	}
	var lockErr error
	if err := conn.Control(func(fd uintptr) {
		lockErr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
	}); err != nil {
		lockErr = err
	}
	if lockErr != nil {
		f.Close()
		if errors.Is(lockErr, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another process is writing this log (%s is locked); one log has one writer", path)
		}
		return nil, fmt.Errorf("locking the log with %s: %w", path, lockErr)
	}
	return f, nil // closing the file releases the lock
}
