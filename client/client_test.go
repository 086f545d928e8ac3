package client_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/client"
)

// TestTokenSourceHonoursItsTimeout: a daemon that takes connections and
// never answers (hung, or stopped) costs a TokenSource call its Timeout,
// not the 20 s of gRPC's connection attempt or a fixed 30 s.
func TestTokenSourceHonoursItsTimeout(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "hung.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // accepted, never answered
		}
	}()
	c, err := client.Dial(client.Options{Socket: socket})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	src := c.TokenSource(client.Request{Scopes: []string{"svv:kjoretoy/ecoc"}, Timeout: time.Second})
	start := time.Now()
	_, err = src.Token()
	elapsed := time.Since(start)
	if code := status.Code(err); code != codes.DeadlineExceeded {
		t.Fatalf("a hung daemon: %v, want DEADLINE_EXCEEDED after the timeout", err)
	}
	// Generous: the point is 1 s against the 20 s or 30 s of before.
	if elapsed > 10*time.Second {
		t.Fatalf("a 1 s timeout took %s", elapsed)
	}
}
