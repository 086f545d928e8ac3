package daemon_test

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// auditOf reads the daemon's audit records after verifying the chain.
func auditOf(t *testing.T, e *env) []audit.Record {
	t.Helper()
	path := filepath.Join(e.dir, "audit", "audit.log")
	if _, err := audit.Verify(path); err != nil {
		t.Fatalf("the audit log does not verify: %v", err)
	}
	var records []audit.Record
	if err := audit.Query([]string{path}, audit.Filter{}, func(r audit.Record) error {
		records = append(records, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return records
}

// call makes a GetToken over the socket and returns its request id.
func call(t *testing.T, e *env, req *portvaktv1.GetTokenRequest) (*portvaktv1.GetTokenResponse, string, error) {
	t.Helper()
	var header metadata.MD
	resp, err := e.unix.API().GetToken(t.Context(), req, grpc.Header(&header))
	ids := header.Get("x-request-id")
	if len(ids) != 1 {
		t.Fatalf("response carries %d request ids", len(ids))
	}
	return resp, ids[0], err
}

func byRequest(records []audit.Record, id string) map[string][]audit.Record {
	kinds := map[string][]audit.Record{}
	for _, r := range records {
		if r.RequestID == id {
			kinds[r.Kind] = append(kinds[r.Kind], r)
		}
	}
	return kinds
}

// TestEveryPathIsAudited: a fetch writes a decision, a signature and an
// outcome; a cache hit one decision record, with its outcome, naming the
// signature it reuses; a denial its decision; a refusal by Maskinporten
// its signature and the MP code. All share the request id the caller got.
func TestEveryPathIsAudited(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	own := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	_, fetchID, err := call(t, e, own)
	if err != nil {
		t.Fatal(err)
	}
	_, hitID, err := call(t, e, own)
	if err != nil {
		t.Fatal(err)
	}
	_, denyID, _ := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim"})
	_, refusedID, _ := call(t, e, &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeNotGranted}, Environment: "sim"})

	records := auditOf(t, e)
	fetch := byRequest(records, fetchID)
	if len(fetch["decision"]) != 1 || len(fetch["signature"]) != 1 || len(fetch["outcome"]) != 1 {
		t.Fatalf("a fetch wrote %v, want one decision, one signature, one outcome", kindsOf(fetch))
	}
	d, sig, out := fetch["decision"][0], fetch["signature"][0], fetch["outcome"][0]
	if d.Decision != "allow" || d.Client != "billing" || !strings.Contains(d.Rule, "policy.yaml:") || d.Transport != "unix" || d.Method != "/portvakt.v1.TokenService/GetToken" {
		t.Errorf("decision record %+v", d)
	}
	if sig.GrantJTI == "" || sig.KeyLabel != "eseal" || len(sig.CertSHA256) != 64 || sig.Environment != "sim" || sig.Scopes[0] != mptest.ScopeOwn {
		t.Errorf("signature record %+v", sig)
	}
	if !containsJTI(w.Sim.Stats().JTIs, sig.GrantJTI) {
		t.Errorf("the signature record's jti %s is not the grant Maskinporten saw", sig.GrantJTI)
	}
	if out.Outcome != "issued" || out.GrantJTI != sig.GrantJTI || out.TokenExpiry == nil {
		t.Errorf("outcome record %+v", out)
	}
	hit := byRequest(records, hitID)
	if len(hit) != 1 || len(hit["decision"]) != 1 || hit["decision"][0].Outcome != "cached" || hit["decision"][0].GrantJTI != sig.GrantJTI {
		t.Errorf("a cache hit wrote %v; want one decision record, cached, naming grant %s", kindsOf(hit), sig.GrantJTI)
	}
	deny := byRequest(records, denyID)
	if len(deny["decision"]) != 1 || deny["decision"][0].Decision != "deny" || deny["decision"][0].Reason == "" || len(deny["signature"]) != 0 {
		t.Errorf("a denial wrote %v", kindsOf(deny))
	}
	refused := byRequest(records, refusedID)
	if len(refused["signature"]) != 1 || len(refused["outcome"]) != 1 || refused["outcome"][0].Outcome != "maskinporten_refused" || refused["outcome"][0].MPCode != "MP-200" {
		t.Errorf("a refusal wrote %v", kindsOf(refused))
	}
}

func kindsOf(m map[string][]audit.Record) map[string]int {
	n := map[string]int{}
	for k, v := range m {
		n[k] = len(v)
	}
	return n
}

func containsJTI(jtis []string, jti string) bool {
	for _, j := range jtis {
		if j == jti {
			return true
		}
	}
	return false
}

// TestRateLimitedIsAudited: a request over its client's rate limit is
// refused before any decision, and is on record (the first of a run at
// once; see TestFloodIsBounded for the rest) with an outcome saying which
// limit refused it.
func TestRateLimitedIsAudited(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	e.writePolicy(t, defaultPolicy()+"    rate_limit: {per_second: 0.001, burst: 1}\n")
	if err := e.daemon.Policies().Reload(); err != nil {
		t.Fatal(err)
	}
	own := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	if _, _, err := call(t, e, own); err != nil {
		t.Fatal(err)
	}
	_, id, err := call(t, e, own)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call within the limit's burst of 1: %v", err)
	}
	recs := byRequest(auditOf(t, e), id)
	if len(recs) != 1 || len(recs["outcome"]) != 1 {
		t.Fatalf("a rate-limited request wrote %v; want its outcome only", kindsOf(recs))
	}
	if out := recs["outcome"][0]; out.Outcome != "rate_limited" || out.Client != "billing" || len(out.Identities) == 0 || !strings.Contains(out.Reason, "rate_limit of 0.001") {
		t.Fatalf("a rate-limited request's record %+v", out)
	}
}
