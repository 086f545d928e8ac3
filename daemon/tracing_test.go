package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

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
			return a.Value.Emit(), true
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
			texts = append(texts, a.Value.Emit())
		}
		for _, ev := range s.Events {
			texts = append(texts, ev.Name)
			for _, a := range ev.Attributes {
				texts = append(texts, a.Value.Emit())
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
