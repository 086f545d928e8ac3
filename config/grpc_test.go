package config

import (
	"strings"
	"testing"
	"time"
)

// TestGRPCDefaults: left out, the connection settings take their defaults.
func TestGRPCDefaults(t *testing.T) {
	cfg, err := Load(writeConfig(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := GRPC{
		MaxRecvBytes: 64 << 10, ShutdownGrace: 15 * time.Second,
		MaxConnections: 1024, MaxConnectionIdle: 5 * time.Minute, MaxConcurrentStreams: 100,
		KeepaliveTime: time.Minute, KeepaliveTimeout: 20 * time.Second,
	}
	if cfg.GRPC != want {
		t.Fatalf("grpc defaults %+v, want %+v", cfg.GRPC, want)
	}
}

// TestGRPCSettings: given, they are kept.
func TestGRPCSettings(t *testing.T) {
	body := validConfig + "grpc: {max_connections: 50, max_connection_idle: 30s, max_concurrent_streams: 8, keepalive_time: 2m, keepalive_timeout: 5s}\n"
	cfg, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.GRPC
	if g.MaxConnections != 50 || g.MaxConnectionIdle != 30*time.Second || g.MaxConcurrentStreams != 8 || g.KeepaliveTime != 2*time.Minute || g.KeepaliveTimeout != 5*time.Second {
		t.Fatalf("grpc settings %+v", g)
	}
}

// TestGRPCNegativeRefused: a negative value is refused with its key named.
func TestGRPCNegativeRefused(t *testing.T) {
	for key, value := range map[string]string{
		"max_recv_bytes": "-1", "shutdown_grace": "-1s",
		"max_connections": "-1", "max_connection_idle": "-1s", "max_concurrent_streams": "-5",
		"keepalive_time": "-1m", "keepalive_timeout": "-20s",
	} {
		t.Run(key, func(t *testing.T) {
			loadFails(t, validConfig, [2]string{"cache: {refresh_margin: 45s}", "cache: {refresh_margin: 45s}\ngrpc: {" + key + ": " + value + "}"},
				"grpc."+key+" must be positive")
		})
	}
}

func TestGRPCStreamsFitHTTP2(t *testing.T) {
	loadFails(t, validConfig, [2]string{"cache: {refresh_margin: 45s}", "cache: {refresh_margin: 45s}\ngrpc: {max_concurrent_streams: 5000000000}"},
		"grpc.max_concurrent_streams 5000000000: too large; give at most 4294967295")
}

func TestGRPCKeepaliveAtLeastASecond(t *testing.T) {
	loadFails(t, validConfig, [2]string{"cache: {refresh_margin: 45s}", "cache: {refresh_margin: 45s}\ngrpc: {keepalive_time: 100ms}"},
		"grpc.keepalive_time 100ms: too short; give at least 1s")
}

// TestGRPCProblemsTogether: each bad key is named, in one error.
func TestGRPCProblemsTogether(t *testing.T) {
	_, err := Load(writeConfig(t, validConfig+"grpc: {max_connections: -1, keepalive_timeout: -1s}\n"))
	if err == nil || !strings.Contains(err.Error(), "grpc.max_connections") || !strings.Contains(err.Error(), "grpc.keepalive_timeout") {
		t.Fatalf("want both keys named, got %v", err)
	}
}
