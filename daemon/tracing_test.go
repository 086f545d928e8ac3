package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// The spans of a request's steps, as the daemon names them.
const (
	spanPolicy = "policy.decide"
	spanCache  = "tokencache.lookup"
	spanSign   = "hsm.sign"
	spanAudit  = "audit.write"
	spanPost   = "maskinporten.post"
	spanRPC    = "portvakt.v1.TokenService/GetToken"
)

// tracedDaemon is a daemon whose spans go to an in-memory exporter.
func tracedDaemon(t *testing.T) (*env, *tracetest.InMemoryExporter) {
	t.Helper()
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	e.tracerProvider = tp
	e.serve(t)
	return e, exporter
}

// tracedCall makes a GetToken as part of the caller's trace (a W3C
// traceparent in the metadata) and returns the reply, its request id, and
// the spans of that trace once the call's own span has ended (the server
// ends it after the reply is sent).
func tracedCall(t *testing.T, e *env, exporter *tracetest.InMemoryExporter, req *portvaktv1.GetTokenRequest, traceID trace.TraceID, parent trace.SpanID) (*portvaktv1.GetTokenResponse, string, []tracetest.SpanStub) {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", fmt.Sprintf("00-%s-%s-01", traceID, parent))
	var header metadata.MD
	resp, err := e.unix.API().GetToken(ctx, req, grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	ids := header.Get("x-request-id")
	if len(ids) != 1 {
		t.Fatalf("response carries %d request ids", len(ids))
	}
	var spans []tracetest.SpanStub
	waitFor(t, "the call's span", func() bool {
		spans = spans[:0]
		ended := false
		for _, s := range exporter.GetSpans() {
			if s.SpanContext.TraceID() == traceID {
				spans = append(spans, s)
				ended = ended || s.Name == spanRPC
			}
		}
		return ended
	})
	return resp, ids[0], spans
}

func attr(s tracetest.SpanStub, key string) (string, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

// TestTraceOfColdGetToken: a GetToken that needs a new token is one trace,
// continuing the caller's: the call's span, and as its children the
// policy decision, the cache lookup, the HSM signature, the Maskinporten
// POST and the audit records (decision, signature, outcome), each with
// the request id. No span holds the token, the grant or the PIN.
func TestTraceOfColdGetToken(t *testing.T) {
	e, exporter := tracedDaemon(t)
	traceID, parent := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}
	resp, id, spans := tracedCall(t, e, exporter, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}, traceID, parent)

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	rpc := byName[spanRPC]
	if len(rpc) != 1 {
		t.Fatalf("%d spans of the call, want 1; spans: %v", len(rpc), names(spans))
	}
	if got := rpc[0].Parent.SpanID(); got != parent || !rpc[0].Parent.IsRemote() {
		t.Errorf("the call's span has parent %s (remote %v), want the caller's %s", got, rpc[0].Parent.IsRemote(), parent)
	}
	for _, want := range []struct {
		name  string
		count int
	}{{spanPolicy, 1}, {spanCache, 1}, {spanSign, 1}, {spanPost, 1}, {spanAudit, 3}} {
		got := byName[want.name]
		if len(got) != want.count {
			t.Errorf("%d %s spans, want %d; spans: %v", len(got), want.name, want.count, names(spans))
		}
		for _, s := range got {
			if s.Parent.SpanID() != rpc[0].SpanContext.SpanID() {
				t.Errorf("%s span's parent is %s, not the call's span %s", s.Name, s.Parent.SpanID(), rpc[0].SpanContext.SpanID())
			}
		}
	}
	for _, s := range spans {
		if got, _ := attr(s, "portvakt.request_id"); got != id {
			t.Errorf("%s span has request id %q, want the call's %q", s.Name, got, id)
		}
	}
	for _, check := range []struct{ span, key, want string }{
		{spanRPC, "portvakt.client", "billing"},
		{spanRPC, "portvakt.environment", "sim"},
		{spanRPC, "portvakt.outcome", "issued"},
		{spanPolicy, "portvakt.decision", "allow"},
		{spanPolicy, "portvakt.client", "billing"},
		{spanCache, "portvakt.cache.hit", "false"},
		{spanSign, "portvakt.hsm.key_label", "eseal"},
		{spanPost, "http.response.status_code", "200"},
	} {
		if got, ok := attr(byName[check.span][0], check.key); got != check.want {
			t.Errorf("%s span's %s = %q (set %v), want %q", check.span, check.key, got, ok, check.want)
		}
	}
	if scopes, _ := attr(rpc[0], "portvakt.scopes"); !strings.Contains(scopes, mptest.ScopeOwn) {
		t.Errorf("the call's span has scopes %s, want %s", scopes, mptest.ScopeOwn)
	}
	kinds := map[string]bool{}
	for _, s := range byName[spanAudit] {
		kind, _ := attr(s, "portvakt.audit.kind")
		kinds[kind] = true
	}
	if !kinds["decision"] || !kinds["signature"] || !kinds["outcome"] {
		t.Errorf("audit spans of kinds %v, want decision, signature and outcome", kinds)
	}
	assertNoSecrets(t, spans, resp.AccessToken, e.world.Token.PIN.Reveal())
}

// TestTraceOfCachedGetToken: a GetToken answered from the cache is traced
// without a signature or a POST, its one audit record a span.
func TestTraceOfCachedGetToken(t *testing.T) {
	e, exporter := tracedDaemon(t)
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	if _, _, err := call(t, e, req); err != nil { // fills the cache
		t.Fatal(err)
	}
	traceID, parent := trace.TraceID{0: 9, 15: 1}, trace.SpanID{0: 9, 7: 1}
	resp, _, spans := tracedCall(t, e, exporter, req, traceID, parent)
	count := map[string]int{}
	for _, s := range spans {
		count[s.Name]++
		if s.Name == spanCache {
			if hit, _ := attr(s, "portvakt.cache.hit"); hit != "true" {
				t.Errorf("cache lookup span has hit=%s, want true", hit)
			}
		}
		if s.Name == spanRPC {
			if outcome, _ := attr(s, "portvakt.outcome"); outcome != "cached" {
				t.Errorf("the call's outcome is %q, want cached", outcome)
			}
		}
	}
	want := map[string]int{spanRPC: 1, spanPolicy: 1, spanCache: 1, spanAudit: 1}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("spans of a cached call: %v, want %v (no %s, no %s)", count, want, spanSign, spanPost)
	}
	assertNoSecrets(t, spans, resp.AccessToken, e.world.Token.PIN.Reveal())
}

// assertNoSecrets fails if any span's name, attribute, status or event
// holds a secret, or anything shaped like a JWT (a grant, a token).
func assertNoSecrets(t *testing.T, spans []tracetest.SpanStub, secrets ...string) {
	t.Helper()
	for _, s := range spans {
		texts := []string{s.Name, s.Status.Description}
		for _, a := range s.Attributes {
			texts = append(texts, a.Value.String())
		}
		for _, ev := range s.Events {
			texts = append(texts, ev.Name)
			for _, a := range ev.Attributes {
				texts = append(texts, a.Value.String())
			}
		}
		for _, text := range texts {
			// A JWT's header is base64url JSON: it starts "eyJ".
			if strings.Contains(text, "eyJ") {
				t.Errorf("%s span holds a JWT: %.40s…", s.Name, text)
			}
			for _, secret := range secrets {
				if secret != "" && strings.Contains(text, secret) {
					t.Errorf("%s span holds a secret", s.Name)
				}
			}
		}
	}
}

func names(spans []tracetest.SpanStub) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

// otlpReceiver is a collector in this process: it takes OTLP trace
// exports over gRPC and over HTTP (protobuf), and keeps what it got.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest

	grpcAddr, httpURL string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	r.grpcAddr = lis.Addr().String()

	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		msg := &coltracepb.ExportTraceServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(body, msg)
		}
		if req.URL.Path != "/v1/traces" || err != nil {
			http.Error(w, fmt.Sprintf("%s: %v", req.URL.Path, err), http.StatusBadRequest)
			return
		}
		r.keep(msg)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(web.Close)
	r.httpURL = web.URL
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.keep(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) keep(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
}

// spans are the names of the spans received, by service.name.
func (r *otlpReceiver) spans() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := map[string][]string{}
	for _, req := range r.requests {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					got[service] = append(got[service], s.GetName())
				}
			}
		}
	}
	return got
}

// TestTracingFromEnvironment: the standard OTEL_* variables turn tracing
// on (an endpoint, or OTEL_TRACES_EXPORTER=otlp) over gRPC or HTTP, or
// keep it off; the daemon's Close flushes what the batch still held, so
// the spans of a call made just before the stop reach the collector.
func TestTracingFromEnvironment(t *testing.T) {
	r := newOTLPReceiver(t)
	tests := []struct {
		name    string
		env     map[string]string
		service string // "" for no spans at all
	}{
		{"an endpoint turns it on, over gRPC by default", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + r.grpcAddr, "OTEL_EXPORTER_OTLP_INSECURE": "true"}, "portvakt"},
		{"otlp over http/protobuf, with a service name", map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": r.httpURL,
			"OTEL_SERVICE_NAME": "portvakt-test"}, "portvakt-test"},
		{"the SDK disabled", map[string]string{
			"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + r.grpcAddr, "OTEL_EXPORTER_OTLP_INSECURE": "true"}, ""},
		{"the exporter none", map[string]string{
			"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + r.grpcAddr, "OTEL_EXPORTER_OTLP_INSECURE": "true"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r.mu.Lock()
			r.requests = nil
			r.mu.Unlock()
			w := mptest.New(t, mptest.Options{})
			e := startDaemon(t, w)
			if _, _, err := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}); err != nil {
				t.Fatal(err)
			}
			e.stop() // flushes
			got := r.spans()
			if tt.service == "" {
				if len(got) != 0 {
					t.Fatalf("spans exported with tracing off: %v", got)
				}
				return
			}
			names := strings.Join(got[tt.service], " ")
			for _, want := range []string{spanRPC, spanPolicy, spanCache, spanSign, spanAudit, spanPost} {
				if !strings.Contains(names, want) {
					t.Errorf("no %s span from service %s; got %v", want, tt.service, got)
				}
			}
		})
	}
}

// TestTraceOfBackgroundRefresh: a refresh ahead of expiry, which no call
// waits for, is traced in the trace of the call whose token it renews,
// with that call's request id, as its audit records are: its signature,
// audit record and POST are children of that call's span.
func TestTraceOfBackgroundRefresh(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	clock := clockwork.NewFakeClockAt(time.Now())
	e.clock, e.tracerProvider = clock, tp
	e.serve(t)
	traceID, parent := trace.TraceID{0: 7, 15: 7}, trace.SpanID{0: 7, 7: 7}
	resp, id, spans := tracedCall(t, e, exporter, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}, traceID, parent)
	var rpc trace.SpanID
	for _, s := range spans {
		if s.Name == spanRPC {
			rpc = s.SpanContext.SpanID()
		}
	}
	clock.Advance(resp.ExpiresAt.AsTime().Sub(clock.Now())) // past the refresh point, on the way to expiry
	waitFor(t, "the refresh", func() bool { return e.daemon.Service().CacheStats().Refreshes >= 1 })
	var posts, signs []tracetest.SpanStub
	waitFor(t, "the refresh's spans", func() bool {
		posts, signs = nil, nil
		for _, s := range exporter.GetSpans() {
			switch s.Name {
			case spanPost:
				posts = append(posts, s)
			case spanSign:
				signs = append(signs, s)
			}
		}
		return len(posts) == 2 && len(signs) == 2
	})
	for _, s := range append(posts, signs...) {
		if s.SpanContext.TraceID() != traceID || s.Parent.SpanID() != rpc {
			t.Errorf("%s span in trace %s under %s, want the first call's trace %s under its span %s", s.Name, s.SpanContext.TraceID(), s.Parent.SpanID(), traceID, rpc)
		}
		if got, _ := attr(s, "portvakt.request_id"); got != id {
			t.Errorf("%s span has request id %q, want the first call's %q", s.Name, got, id)
		}
	}
}
