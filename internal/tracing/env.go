package tracing

import (
	"fmt"
	"strings"
)

// The OTLP protocols the exporter speaks (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Settings is what the environment asks of tracing.
type Settings struct {
	// Enabled: spans are made and exported.
	Enabled bool
	// Protocol is ProtocolGRPC or ProtocolHTTP. The exporter reads the
	// endpoint, headers, TLS and timeout from the OTEL_EXPORTER_OTLP_*
	// variables itself.
	Protocol string
}

// FromEnv decides from the standard OpenTelemetry variables, read with
// getenv (os.Getenv), whether to trace:
//
//   - OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none: off;
//   - OTEL_TRACES_EXPORTER=otlp: on;
//   - OTEL_TRACES_EXPORTER unset: on when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else off.
//
// The protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else grpc. A value Portvakt cannot honour
// (another exporter, http/json) is an error naming the variable: asked
// for traces it cannot send, the daemon does not start rather than
// silently export nothing.
func FromEnv(getenv func(string) string) (Settings, error) {
	disabled := strings.TrimSpace(getenv("OTEL_SDK_DISABLED"))
	switch strings.ToLower(disabled) {
	case "true":
		return Settings{}, nil
	case "", "false":
	default:
		return Settings{}, fmt.Errorf("OTEL_SDK_DISABLED=%q: want true or false", disabled)
	}
	exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	var on bool
	switch exporter {
	case "none":
		return Settings{}, nil
	case "otlp":
		on = true
	case "":
		on = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != "" || strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != ""
	default:
		return Settings{}, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: Portvakt exports traces over OTLP only; set otlp, or none for no traces", exporter)
	}
	if !on {
		return Settings{}, nil
	}
	name, protocol := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if protocol == "" {
		name, protocol = "OTEL_EXPORTER_OTLP_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch protocol {
	case "":
		protocol = ProtocolGRPC
	case ProtocolGRPC, ProtocolHTTP:
	default:
		return Settings{}, fmt.Errorf("%s=%q: want %s or %s", name, protocol, ProtocolGRPC, ProtocolHTTP)
	}
	return Settings{Enabled: true, Protocol: protocol}, nil
}
