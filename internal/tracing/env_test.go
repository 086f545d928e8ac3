package tracing

import (
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	const endpoint = "http://collector:4317"
	tests := []struct {
		name    string
		env     map[string]string
		want    Settings
		wantErr string // part of the error; "" for none
	}{
		{name: "nothing set: off", env: nil, want: Settings{}},
		{name: "exporter otlp: on, grpc", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: Settings{Enabled: true, Protocol: ProtocolGRPC}},
		{name: "endpoint: on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, want: Settings{Enabled: true, Protocol: ProtocolGRPC}},
		{name: "traces endpoint: on", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}, want: Settings{Enabled: true, Protocol: ProtocolGRPC}},
		{name: "blank endpoint: off", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, want: Settings{}},
		{name: "exporter none beats the endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, want: Settings{}},
		{name: "SDK disabled beats otlp", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: Settings{}},
		{name: "SDK disabled, any case", env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, want: Settings{}},
		{name: "SDK not disabled", env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, want: Settings{Enabled: true, Protocol: ProtocolGRPC}},
		{name: "http/protobuf", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, want: Settings{Enabled: true, Protocol: ProtocolHTTP}},
		{name: "traces protocol beats the general one", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, want: Settings{Enabled: true, Protocol: ProtocolGRPC}},
		{name: "a protocol alone turns nothing on", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, want: Settings{}},
		{name: "http/json is refused", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
		{name: "another exporter is refused", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: `OTEL_TRACES_EXPORTER="zipkin"`},
		{name: "a bad SDK_DISABLED is refused", env: map[string]string{"OTEL_SDK_DISABLED": "yes"}, wantErr: `OTEL_SDK_DISABLED="yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzFromEnv: whatever the variables hold, the decision is off, or on
// with a protocol the exporter speaks, or an error; never a panic.
func FuzzFromEnv(f *testing.F) {
	f.Add("", "otlp", "", "", "grpc")
	f.Add("true", "", "http://c:4317", "", "")
	f.Add("false", "none", "", "x", "http/protobuf")
	f.Fuzz(func(t *testing.T, disabled, exporter, endpoint, tracesEndpoint, protocol string) {
		env := map[string]string{"OTEL_SDK_DISABLED": disabled, "OTEL_TRACES_EXPORTER": exporter,
			"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": tracesEndpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
		got, err := FromEnv(func(k string) string { return env[k] })
		switch {
		case err != nil:
			if got != (Settings{}) {
				t.Fatalf("an error with settings %+v", got)
			}
		case got.Enabled:
			if got.Protocol != ProtocolGRPC && got.Protocol != ProtocolHTTP {
				t.Fatalf("on with protocol %q", got.Protocol)
			}
		case got != (Settings{}):
			t.Fatalf("off with settings %+v", got)
		}
	})
}
