package daemon_test

import (
	"encoding/binary"
	"io"
	"runtime/debug"
	"testing"
	"time"

	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/internal/mptest"
)

// TestApplyMemoryLimit: the configuration's memory_limit becomes the
// runtime's soft memory limit, unless GOMEMLIMIT is set, which wins.
func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	for _, tc := range []struct {
		name, env string
		want      int64
		wantFrom  string
	}{
		{"from the configuration", "", 48 << 20, "memory_limit"},
		{"GOMEMLIMIT wins", "100MiB", 100 << 20, "GOMEMLIMIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.env)
			if tc.env != "" {
				// What the runtime read from GOMEMLIMIT at start.
				debug.SetMemoryLimit(100 << 20)
			}
			got, from := daemon.ApplyMemoryLimit(48 << 20)
			if got != tc.want || from != tc.wantFrom {
				t.Fatalf("ApplyMemoryLimit = %d from %s, want %d from %s", got, from, tc.want, tc.wantFrom)
			}
			if inForce := debug.SetMemoryLimit(-1); inForce != tc.want {
				t.Fatalf("the runtime's memory limit is %d, want %d", inForce, tc.want)
			}
		})
	}
}

// TestSmallMessageTransport: the daemon's HTTP/2 settings are sized for
// small messages, as a client sees them: a static 64 KiB stream window
// (gRPC's default window grows with the estimated bandwidth, up to
// megabytes a connection), a connection window of 256 KiB, and a bound on
// a call's metadata.
func TestSmallMessageTransport(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	c := dialPreface(t, e)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hang guard
	settings := map[uint16]uint32{}
	var connWindowIncrement uint32
	// The daemon's SETTINGS come first, then the WINDOW_UPDATE on
	// stream 0 that opens its connection window past HTTP/2's 65535.
	for frames := 0; connWindowIncrement == 0 && frames < 4; frames++ {
		header := make([]byte, 9)
		if _, err := io.ReadFull(c, header); err != nil {
			t.Fatalf("reading the daemon's frames: %v", err)
		}
		length := int(header[0])<<16 | int(header[1])<<8 | int(header[2])
		body := make([]byte, length)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		stream := binary.BigEndian.Uint32(header[5:]) &^ (1 << 31)
		switch {
		case header[3] == 4 && header[4]&1 == 0: // SETTINGS, not an ACK
			for i := 0; i+6 <= len(body); i += 6 {
				settings[binary.BigEndian.Uint16(body[i:])] = binary.BigEndian.Uint32(body[i+2:])
			}
		case header[3] == 8 && stream == 0: // WINDOW_UPDATE of the connection
			connWindowIncrement = binary.BigEndian.Uint32(body) &^ (1 << 31)
		}
	}
	const (
		settingInitialWindowSize = 4
		settingMaxHeaderListSize = 6
	)
	if v := settings[settingInitialWindowSize]; v != 64<<10 {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE %d, want %d (settings %v)", v, 64<<10, settings)
	}
	if v := settings[settingMaxHeaderListSize]; v != 16<<10 {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d (settings %v)", v, 16<<10, settings)
	}
	if want := uint32(256<<10 - 65535); connWindowIncrement != want {
		t.Errorf("connection window opened by %d, want %d (to 256 KiB)", connWindowIncrement, want)
	}
}
