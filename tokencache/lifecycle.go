package tokencache

import (
	"context"
	"fmt"
)

// Close stops the cache: it stops every refresh timer, cancels every fetch
// in flight (background refreshes included), and waits for the goroutines
// the cache started to return, or for ctx to end, when it returns ctx's
// error naming how many are still running. Callers waiting in Get get
// ErrClosed at once; every call after Close returns ErrClosed without
// fetching. Close may be called more than once.
func (c *Cache) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		for _, el := range c.entries {
			c.stopTimer(el.Value.(*entry))
		}
		c.mu.Unlock()
		c.cancelRoot()
		// No goroutine is added after closed is set: every wg.Add is made
		// under c.mu while the cache is open.
		go func() {
			c.wg.Wait()
			close(c.done)
		}()
	})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("closing the token cache with fetches still running (%d): %w", c.running.Load(), ctx.Err())
	}
}
