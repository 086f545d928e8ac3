package daemon_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// These tests hold the daemon to what a caller can make its audit log
// grow by: no record over maxRecordBytes, one record for a cached token,
// nothing for a request with a field over its bound, and for calls over a
// rate limit and repeated denials one record a second, with a count.

// maxRecordBytes is the most a line of the audit log may take.
const maxRecordBytes = 4 << 10

// countWindow is how often a run of identical refusals is written, with
// its count (README, "The audit log").
const countWindow = time.Second

func auditPath(e *env) string { return filepath.Join(e.dir, "audit", "audit.log") }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// checkRecordSizes fails for any record whose line is over maxRecordBytes,
// and returns the longest line's length.
func checkRecordSizes(t *testing.T, records []audit.Record) int {
	t.Helper()
	longest := 0
	for _, r := range records {
		n := len(r.Line())
		if n > maxRecordBytes {
			t.Errorf("record %d (%s) is %d bytes, over %d", r.Seq, r.Kind, n, maxRecordBytes)
		}
		longest = max(longest, n)
	}
	return longest
}

// calls is what a record stands for: its count, or the one call it is of.
func calls(r audit.Record) int64 { return int64(max(r.Count, 1)) }

// floodPolicy knows the mTLS client billing only by its certificate, so
// that the Unix socket's peer (this test's uid and gid) is a caller no
// client claims.
const floodPolicy = `clients:
  - name: billing
    identities: [%q]
    rules:
      - environments: [sim]
        scopes: [%s]
    rate_limit: {per_second: %g, burst: %d}
unknown_callers:
  rate_limit: {per_second: %g, burst: %d}
`

// TestFloodIsBounded: a client over its rate limit and a caller the policy
// does not know, each calling from ten goroutines as fast as they can for
// 10 s, grow the audit log by no more than their limits allow (every call
// admitted writes at most a decision, a signature and an outcome) plus one
// record a second for each run of refused calls. Every record is at most
// 4 KiB, and the counts add up to every call refused, so the log still
// shows who was limited or denied, and how often.
func TestFloodIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the daemon for 10 s")
	}
	const (
		clientRate, clientBurst   = 5.0, 5
		unknownRate, unknownBurst = 2.0, 4
		workers                   = 10
		flood                     = 10 * time.Second
	)
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	// Every refused call would be a warning line; the log is not what is
	// measured here.
	e.edit(t, func(cfg string) string { return strings.Replace(cfg, "log: {level: debug}", "log: {level: error}", 1) })
	e.writePolicy(t, fmt.Sprintf(floodPolicy, billingID, mptest.ScopeOwn, clientRate, clientBurst, unknownRate, unknownBurst))
	e.serve(t)
	path := auditPath(e)
	sizeBefore, recordsBefore := fileSize(t, path), len(auditOf(t, e))

	type tally struct{ ok, denied, limited atomic.Int64 }
	var billing, stranger tally
	floods := []struct {
		api   portvaktv1.TokenServiceClient
		tally *tally
	}{{e.mtls.API(), &billing}, {e.unix.API(), &stranger}}
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"}
	start := time.Now()
	end := start.Add(flood)
	var wg sync.WaitGroup
	failures := make(chan error, 2*workers)
	for _, f := range floods {
		for range workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					_, err := f.api.GetToken(context.Background(), req)
					switch status.Code(err) {
					case codes.OK:
						f.tally.ok.Add(1)
					case codes.PermissionDenied:
						f.tally.denied.Add(1)
					case codes.ResourceExhausted:
						f.tally.limited.Add(1)
					default:
						failures <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	e.stop() // the counts not yet written are written on the way out
	elapsed := time.Since(start)
	close(failures)
	for err := range failures {
		t.Fatalf("a call failed: %v", err)
	}

	all := auditOf(t, e)
	records := all[recordsBefore:]
	growth := fileSize(t, path) - sizeBefore
	longest := checkRecordSizes(t, all)

	// What the limits allow: a token bucket admits at most its burst and
	// its rate over the time; a run of refusals writes a record at most
	// once a window, and once more for what was counted when the daemon
	// stopped.
	secs := elapsed.Seconds()
	admittedClient := int64(math.Floor(clientBurst + clientRate*secs))
	admittedUnknown := int64(math.Floor(unknownBurst + unknownRate*secs))
	perRun := int64(elapsed/countWindow) + 2
	recordBound := 3*admittedClient + // decision, signature, outcome: a miss, the most a call writes
		perRun + // billing's calls over its limit
		min(admittedUnknown, perRun) + // the stranger's denials, all alike
		perRun // the stranger's calls over the limit unknown callers share
	byteBound := recordBound * maxRecordBytes

	var (
		decisions                                 int64 // billing's, each an admitted call
		billingLimited, strangerDenied, strangerL int64 // calls, by the counts
		runs                                      = map[string]int64{}
	)
	for _, r := range records {
		switch {
		case r.Client == "billing" && r.Kind == audit.KindDecision:
			decisions++
		case r.Client == "billing" && r.Outcome == "rate_limited":
			billingLimited += calls(r)
			runs["billing limited"]++
		case r.Client == "" && r.Kind == audit.KindDecision && r.Decision == "deny":
			strangerDenied += calls(r)
			runs["stranger denied"]++
		case r.Client == "" && r.Outcome == "rate_limited":
			strangerL += calls(r)
			runs["stranger limited"]++
			if !slices.Equal(r.Identities, []string{fmt.Sprintf("uid:%d", os.Getuid()), fmt.Sprintf("gid:%d", os.Getgid())}) {
				t.Errorf("a rate-limited stranger's record names %q", r.Identities)
			}
		case r.Client == "billing" && (r.Kind == audit.KindSignature || r.Kind == audit.KindOutcome):
		default:
			t.Errorf("unexpected record %+v", r)
		}
	}
	t.Logf("%s: billing %d ok, %d rate limited; stranger %d denied, %d rate limited",
		elapsed.Round(time.Millisecond), billing.ok.Load(), billing.limited.Load(), stranger.denied.Load(), stranger.limited.Load())
	t.Logf("audit grew by %d bytes in %d records (bound: %d records, %d bytes); longest record %d bytes; records per run %v",
		growth, len(records), recordBound, byteBound, longest, runs)

	tests := []struct {
		what      string
		got, want int64
		atMost    bool // got <= want, rather than got == want
	}{
		{"bytes the audit grew by", growth, byteBound, true},
		{"records written", int64(len(records)), recordBound, true},
		{"billing's calls admitted", billing.ok.Load(), admittedClient, true},
		{"the stranger's calls admitted", stranger.denied.Load(), admittedUnknown, true},
		{"billing's decision records, one per call admitted", decisions, billing.ok.Load(), false},
		{"billing's rate-limited calls, by the counts", billingLimited, billing.limited.Load(), false},
		{"the stranger's denials, by the counts", strangerDenied, stranger.denied.Load(), false},
		{"the stranger's rate-limited calls, by the counts", strangerL, stranger.limited.Load(), false},
		{"records of billing's rate-limited calls", runs["billing limited"], perRun, true},
		{"records of the stranger's denials", runs["stranger denied"], perRun, true},
		{"records of the stranger's rate-limited calls", runs["stranger limited"], perRun, true},
	}
	for _, tt := range tests {
		if tt.atMost && tt.got > tt.want || !tt.atMost && tt.got != tt.want {
			rel := "="
			if tt.atMost {
				rel = "<="
			}
			t.Errorf("%s: %d, want %s %d", tt.what, tt.got, rel, tt.want)
		}
	}
	if billing.limited.Load() == 0 || stranger.limited.Load() == 0 {
		t.Fatal("the flood never reached a rate limit")
	}
}

// TestCachedGetTokenIsOneRecord: a GetToken answered from the cache writes
// exactly one record, a decision with its outcome, holding all that the
// decision and outcome of a miss hold between them: who asked, as which
// client, for what, by which rule, and the grant whose token it got.
func TestCachedGetTokenIsOneRecord(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	req := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeDelegated}, Environment: "sim",
		ConsumerOrg: mptest.ConsumerOrg, Resource: "https://api.example/kjoretoy"}
	if _, _, err := call(t, e, req); err != nil { // the miss
		t.Fatal(err)
	}
	before := auditOf(t, e)
	var sig audit.Record
	for _, r := range before {
		if r.Kind == audit.KindSignature {
			sig = r
		}
	}
	for i := range 5 {
		resp, id, err := call(t, e, req)
		if err != nil {
			t.Fatal(err)
		}
		after := auditOf(t, e)
		if n := len(after) - len(before); n != 1 {
			t.Fatalf("cached GetToken %d wrote %d records, want 1", i+1, n)
		}
		rec := after[len(after)-1]
		before = after
		expiry := "none"
		if rec.TokenExpiry != nil {
			expiry = rec.TokenExpiry.UTC().Format(time.RFC3339Nano)
		}
		fields := []struct {
			name      string
			got, want any
		}{
			{"request_id", rec.RequestID, id},
			{"kind", rec.Kind, audit.KindDecision},
			{"decision", rec.Decision, "allow"},
			{"outcome", rec.Outcome, "cached"},
			{"transport", rec.Transport, "unix"},
			{"identities", strings.Join(rec.Identities, " "), fmt.Sprintf("uid:%d gid:%d", os.Getuid(), os.Getgid())},
			{"client", rec.Client, "billing"},
			{"method", rec.Method, "/portvakt.v1.TokenService/GetToken"},
			{"environment", rec.Environment, "sim"},
			{"scopes", strings.Join(rec.Scopes, " "), mptest.ScopeDelegated},
			{"consumer_org", rec.ConsumerOrg, mptest.ConsumerOrg},
			{"resource", rec.Resource, req.Resource},
			{"rule is a FILE:LINE", strings.Contains(rec.Rule, "policy.yaml:"), true},
			{"reason", rec.Reason != "", true},
			{"grant_jti, the signature's", rec.GrantJTI, sig.GrantJTI},
			{"token_expires_at, the token's", expiry, resp.GetExpiresAt().AsTime().UTC().Format(time.RFC3339Nano)},
			{"count", rec.Count, uint64(0)},
			{"short", len(rec.Line()) <= maxRecordBytes, true},
		}
		for _, f := range fields {
			if f.got != f.want {
				t.Errorf("cached GetToken %d: %s = %v, want %v", i+1, f.name, f.got, f.want)
			}
		}
	}
	if sig.GrantJTI == "" {
		t.Fatal("the miss wrote no signature record")
	}
}

// TestFieldsOverTheirBoundsAreRefusedUnrecorded: a request with a field
// over its bound (a 60 kB scope, say) gets InvalidArgument naming the field
// and the bound, and writes nothing to the audit log: it never reached the
// policy. A caller with an identity over its bound is refused the same way.
func TestFieldsOverTheirBoundsAreRefusedUnrecorded(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	long := func(prefix string, n int) string { return prefix + strings.Repeat("a", n-len(prefix)) }
	own := func(r *portvaktv1.GetTokenRequest) *portvaktv1.GetTokenRequest {
		r.Environment = "sim"
		if r.Scopes == nil {
			r.Scopes = []string{mptest.ScopeOwn}
		}
		return r
	}
	tests := []struct {
		name string
		req  *portvaktv1.GetTokenRequest
		says string
	}{
		{"a 60 kB scope", own(&portvaktv1.GetTokenRequest{Scopes: []string{long("svv:kjoretoy/", 60_000)}}), "scopes: scope 1 is 60000 bytes long; a scope has at most 128"},
		{"a scope of 129 bytes", own(&portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn, long("svv:kjoretoy/", 129)}}), "scopes: scope 2 is 129 bytes long; a scope has at most 128"},
		{"scopes of 600 bytes", own(&portvaktv1.GetTokenRequest{Scopes: []string{long("a:", 120), long("b:", 120), long("c:", 120), long("d:", 120), long("e:", 120)}}), "scopes: the scopes are 600 bytes long together; at most 512"},
		{"eleven scopes", own(&portvaktv1.GetTokenRequest{Scopes: strings.Fields(strings.Repeat(mptest.ScopeOwn+" ", 11))}), "scopes: 11 scopes; at most 10"},
		{"a 60 kB resource", own(&portvaktv1.GetTokenRequest{Resource: long("https://api.example/", 60_000)}), "resource: 60000 bytes long; at most 256"},
		{"a 60 kB consumer_org", own(&portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeDelegated}, ConsumerOrg: long("9", 60_000)}), "consumer_org: 60000 bytes long; at most 32"},
		{"a 60 kB environment", &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: long("sim", 60_000)}, "environment: 60000 bytes long; an environment's name has at most 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := fileSize(t, auditPath(e))
			_, _, err := call(t, e, tt.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.says) || len(st.Message()) > 300 {
				t.Fatalf("GetToken = %v %.300q, want InvalidArgument saying %q (and no more than 300 bytes)", st.Code(), st.Message(), tt.says)
			}
			if grown := fileSize(t, auditPath(e)) - size; grown != 0 {
				t.Fatalf("the audit log grew by %d bytes", grown)
			}
		})
	}

	t.Run("an identity of 257 bytes", func(t *testing.T) {
		id, _ := url.Parse(long("spiffe://portvakt.test/", 257))
		cert, key := e.ca.issue(t, e.dir, "long", &x509.Certificate{
			Subject: pkix.Name{CommonName: "long"}, URIs: []*url.URL{id},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		opts := e.tlsOpts
		opts.CertFile, opts.KeyFile = cert, key
		size := fileSize(t, auditPath(e))
		_, err := dial(t, opts).API().GetToken(t.Context(), own(&portvaktv1.GetTokenRequest{}))
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "identities of at most 256") {
			t.Fatalf("GetToken = %v %q, want Unauthenticated naming the bound", st.Code(), st.Message())
		}
		if grown := fileSize(t, auditPath(e)) - size; grown != 0 {
			t.Fatalf("the audit log grew by %d bytes", grown)
		}
	})
}

// TestRequestAtEveryBoundFitsARecord: the longest request there can be
// (the longest identity, scopes as long as they may be together, a
// consumer_org and the longest resource), allowed and then denied, writes
// records of at most 4 KiB each: its decision (with the policy's reason
// naming every scope), its signature, and its outcome (Maskinporten's
// refusal).
func TestRequestAtEveryBoundFitsARecord(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	identity := long("spiffe://portvakt.test/ns/", 256)
	var scopes []string
	for i := range 4 { // 4 × 128 bytes: the most scopes may take together
		scopes = append(scopes, long(fmt.Sprintf("svv:%d/", i), 128-len(".delegert"))+".delegert")
	}
	e.writePolicy(t, fmt.Sprintf(`clients:
  - name: a-client-with-quite-a-long-name-as-clients-go
    identities: [%q]
    rules:
      - environments: [sim]
        scopes: [%s]
        consumer_orgs: ["%s"]
      - environments: [sim]
        scopes: [%s]
        consumer_orgs: ["%s"]
      - environments: [sim]
        scopes: [%s]
        consumer_orgs: ["%s"]
      - environments: [sim]
        scopes: [%s]
        consumer_orgs: ["%s"]
`, identity, scopes[0], mptest.ConsumerOrg, scopes[1], mptest.ConsumerOrg, scopes[2], mptest.ConsumerOrg, scopes[3], mptest.ConsumerOrg))
	e.serve(t)
	u, _ := url.Parse(identity)
	cert, key := e.ca.issue(t, e.dir, "longest", &x509.Certificate{
		Subject: pkix.Name{CommonName: "longest"}, URIs: []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	opts := e.tlsOpts
	opts.CertFile, opts.KeyFile = cert, key
	api := dial(t, opts).API()
	req := &portvaktv1.GetTokenRequest{Scopes: scopes, Environment: "sim", ConsumerOrg: mptest.ConsumerOrg,
		Resource: long("https://api.example/", 256)}
	// Maskinporten (the simulator) knows none of these scopes: a signature
	// and a refusal, the longest outcome.
	if _, err := api.GetToken(t.Context(), req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("GetToken = %v, want Maskinporten's refusal", err)
	}
	req.ConsumerOrg = mptest.StrangerOrg
	if _, err := api.GetToken(t.Context(), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GetToken = %v, want a denial", err)
	}
	records := auditOf(t, e)
	kinds := map[string]int{}
	for _, r := range records {
		kinds[r.Kind+" "+r.Decision+r.Outcome]++
	}
	for _, want := range []string{"decision allow", "signature ", "outcome maskinporten_refused", "decision deny"} {
		if kinds[want] != 1 {
			t.Fatalf("records %v; want one %q", kinds, want)
		}
	}
	t.Logf("the longest record of a request at every bound is %d bytes", checkRecordSizes(t, records))
}

// TestRepeatedDenialsAreCounted: a denial is on record before its answer;
// the same denial repeated within a second is counted, and written once
// with its count; a different denial is a record of its own at once.
func TestRepeatedDenialsAreCounted(t *testing.T) {
	w := mptest.New(t, mptest.Options{})
	e := startDaemon(t, w)
	denied := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim"}
	other := &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeElsewhere}, Environment: "sim", ConsumerOrg: mptest.StrangerOrg}
	const repeats = 30
	start := time.Now()
	var first, last string
	for i := range repeats {
		_, id, err := call(t, e, denied)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("call %d: %v", i+1, err)
		}
		if i == 0 {
			first = id
			// On record before the answer.
			if recs := byRequest(auditOf(t, e), id); len(recs["decision"]) != 1 {
				t.Fatalf("the first denial was not on record when it was answered: %v", kindsOf(recs))
			}
		}
		last = id
	}
	_, otherID, _ := call(t, e, other)
	if recs := byRequest(auditOf(t, e), otherID); len(recs["decision"]) != 1 || recs["decision"][0].Count != 0 {
		t.Fatalf("a different denial was not on record at once: %v", kindsOf(recs))
	}

	// The count is written when the second is over.
	var counted []audit.Record
	deadline := time.Now().Add(10 * time.Second) // a hang guard
	for {
		counted = counted[:0]
		var total int64
		for _, r := range auditOf(t, e) {
			if r.Kind == audit.KindDecision && r.Decision == "deny" && r.ConsumerOrg == "" {
				counted = append(counted, r)
				total += calls(r)
			}
		}
		if total == repeats {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the denials' records count %d calls, want %d", total, repeats)
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if len(counted) < 2 || len(counted) > int(elapsed/countWindow)+1 {
		t.Fatalf("%d records for %d identical denials in %s, want the first and then one a second", len(counted), repeats, elapsed)
	}
	if counted[0].RequestID != first || counted[0].Count != 0 {
		t.Errorf("the first record is %+v, want the first call's, without a count", counted[0])
	}
	final := counted[len(counted)-1]
	if final.RequestID != last || final.Count == 0 || final.Reason != counted[0].Reason || !slices.Equal(final.Scopes, counted[0].Scopes) {
		t.Errorf("the last count is %+v, want the last call's id and the first record's content", final)
	}
	checkRecordSizes(t, counted)
}
