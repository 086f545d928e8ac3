package daemon_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/client"
	"github.com/portvakt/portvakt/internal/mptest"
	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// systemUserRule is a rule for system users, appended to the default
// policy: the simulator's customer, and ConsumerOrg, which has no system
// user for the client in the simulator (only a delegation).
const systemUserRule = `      - environments: [sim]
        scopes: [%s]
        system_users: ["%s", "%s"]
`

func startSystemUserDaemon(t *testing.T) (*mptest.World, *env) {
	t.Helper()
	w := mptest.New(t, mptest.Options{})
	e := prepare(t, w)
	e.writePolicy(t, defaultPolicy()+fmt.Sprintf(systemUserRule, mptest.ScopeOwn, mptest.SystemUserCustomer, mptest.ConsumerOrg))
	e.serve(t)
	return w, e
}

func systemUserRequest(org, ref string) *portvaktv1.GetTokenRequest {
	return &portvaktv1.GetTokenRequest{Scopes: []string{mptest.ScopeOwn}, Environment: "sim",
		SystemUser: &portvaktv1.SystemUser{Org: org, ExternalRef: ref}}
}

// checkSystemUserRecords checks that the request's records are exactly
// the kinds given, in order, each naming the system user.
func checkSystemUserRecords(t *testing.T, e *env, id, org, ref string, kinds ...string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	for _, r := range auditOf(t, e) {
		if r.RequestID == id {
			recs = append(recs, r)
		}
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Kind)
		if r.SystemUserOrg != org || r.SystemUserRef != ref || r.ConsumerOrg != "" || r.Client != "billing" {
			t.Errorf("%s record names system user %q ref %q consumer_org %q client %q; want %q ref %q: %s",
				r.Kind, r.SystemUserOrg, r.SystemUserRef, r.ConsumerOrg, r.Client, org, ref, r.Line())
		}
	}
	if !slices.Equal(got, kinds) {
		t.Fatalf("request %s wrote %v, want %v", id, got, kinds)
	}
	return recs
}

// TestSystemUserToken: a token for the simulator's system user, through
// the daemon, signed in SoftHSM2: its authorization_details name the
// customer, the system user and the system; its records name the system
// user; a second call is a cache hit; the organisation's own token is
// another one.
func TestSystemUserToken(t *testing.T) {
	w, e := startSystemUserDaemon(t)
	req := systemUserRequest(mptest.SystemUserCustomer, mptest.SystemUserExternalRef)
	resp, id, err := call(t, e, req)
	if err != nil {
		t.Fatal(err)
	}
	recs := checkSystemUserRecords(t, e, id, mptest.SystemUserCustomer, mptest.SystemUserExternalRef, audit.KindDecision, audit.KindSignature, audit.KindOutcome)
	if recs[0].Decision != "allow" || !strings.Contains(recs[0].Reason, "for system user "+mptest.SystemUserCustomer) || !strings.HasSuffix(recs[0].Rule, "policy.yaml:10") {
		t.Errorf("decision %s", recs[0].Line())
	}
	if recs[2].Outcome != "issued" || recs[2].GrantJTI != recs[1].GrantJTI || recs[1].GrantJTI == "" {
		t.Errorf("signature %s\noutcome %s", recs[1].Line(), recs[2].Line())
	}

	claims := accessTokenClaims(t, resp.GetAccessToken())
	details, _ := json.Marshal(claims["authorization_details"])
	want := fmt.Sprintf(`[{"system_id":%q,"systemuser_id":[%q],"systemuser_org":{"ID":"0192:%s","authority":"iso6523-actorid-upis"},"type":"urn:altinn:systemuser"}]`,
		mptest.SystemID, mptest.SystemUserID, mptest.SystemUserCustomer)
	if string(details) != want {
		t.Errorf("the token's authorization_details =\n%s\nwant\n%s", details, want)
	}
	if _, delegated := claims["supplier"]; delegated || claims["scope"] != mptest.ScopeOwn {
		t.Errorf("token claims %v", claims)
	}

	// The same request again: from the cache, one record, no signature.
	signs := w.Sim.Stats().TokenRequests
	again, id2, err := call(t, e, req)
	if err != nil {
		t.Fatal(err)
	}
	hit := checkSystemUserRecords(t, e, id2, mptest.SystemUserCustomer, mptest.SystemUserExternalRef, audit.KindDecision)
	if again.GetAccessToken() != resp.GetAccessToken() || hit[0].Outcome != "cached" || hit[0].GrantJTI != recs[1].GrantJTI || w.Sim.Stats().TokenRequests != signs {
		t.Errorf("second call: a new token or a new request to Maskinporten; record %s", hit[0].Line())
	}

	// The organisation's own token is never the system user's.
	own, err := e.unix.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	if own.AccessToken == resp.GetAccessToken() || accessTokenClaims(t, own.AccessToken)["authorization_details"] != nil {
		t.Fatal("the own token is the system user's, or names one")
	}

	// The Go client over mTLS asks the same and gets the cached token.
	viaClient, err := e.mtls.Token(t.Context(), client.Request{Scopes: []string{mptest.ScopeOwn}, Environment: "sim",
		SystemUser: &client.SystemUser{Org: mptest.SystemUserCustomer, ExternalRef: mptest.SystemUserExternalRef}})
	if err != nil || viaClient.AccessToken != resp.GetAccessToken() {
		t.Fatalf("the Go client's system-user token: %v (same as the cached one: %v)", err, err == nil && viaClient.AccessToken == resp.GetAccessToken())
	}

	families := scrape(t, "http://"+e.daemon.Addresses()["metrics"]+"/metrics")
	if got, _ := value(families, "portvakt_tokens_total", map[string]string{"environment": "sim", "kind": "system_user"}); got != 3 {
		t.Errorf("portvakt_tokens_total{kind=system_user} = %v, want 3 (one fresh, two cached)", got)
	}

	// WhoAmI lists the rule's system users.
	who, err := e.unix.API().WhoAmI(t.Context(), &portvaktv1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if g := who.GetGrants(); len(g) != 3 || !slices.Equal(g[2].GetSystemUsers(), []string{mptest.SystemUserCustomer, mptest.ConsumerOrg}) || len(g[0].GetSystemUsers()) != 0 {
		t.Errorf("WhoAmI grants = %v", g)
	}
}

// TestSystemUserDenied: a customer the policy does not list for the
// client is PERMISSION_DENIED, recorded as a denial naming the customer,
// and never reaches the HSM or Maskinporten.
func TestSystemUserDenied(t *testing.T) {
	w, e := startSystemUserDaemon(t)
	_, id, err := call(t, e, systemUserRequest(mptest.StrangerOrg, ""))
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "for system user "+mptest.StrangerOrg) {
		t.Fatalf("GetToken = %v %q, want PERMISSION_DENIED naming the system user", st.Code(), st.Message())
	}
	recs := checkSystemUserRecords(t, e, id, mptest.StrangerOrg, "", audit.KindDecision)
	if recs[0].Decision != "deny" || !strings.Contains(recs[0].Reason, "for system user "+mptest.StrangerOrg) {
		t.Errorf("deny record %s", recs[0].Line())
	}
	if n := w.Sim.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests reached Maskinporten", n)
	}
}

// TestSystemUserRefusedByMaskinporten: the policy allows the request, the
// grant is signed and sent, and the simulator refuses it with MP-303: for
// a customer with no system user for the client, and for a wrong or
// missing external reference. Each is FAILED_PRECONDITION with the MP code
// in an ErrorInfo, and its three records name the system user.
func TestSystemUserRefusedByMaskinporten(t *testing.T) {
	_, e := startSystemUserDaemon(t)
	tests := []struct {
		name, org, ref string
	}{
		{"a customer without a system user", mptest.ConsumerOrg, ""},
		{"a wrong external reference", mptest.SystemUserCustomer, "not-" + mptest.SystemUserExternalRef},
		{"no external reference, where the system user has one", mptest.SystemUserCustomer, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, id, err := call(t, e, systemUserRequest(tt.org, tt.ref))
			if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "MP-303") {
				t.Fatalf("GetToken = %v %q, want FAILED_PRECONDITION with MP-303", st.Code(), st.Message())
			}
			assertMPDetail(t, err, "MP-303")
			recs := checkSystemUserRecords(t, e, id, tt.org, tt.ref, audit.KindDecision, audit.KindSignature, audit.KindOutcome)
			if recs[0].Decision != "allow" || recs[2].Outcome != "maskinporten_refused" || recs[2].MPCode != "MP-303" || recs[2].GrantJTI != "" {
				t.Errorf("decision %s\noutcome %s", recs[0].Line(), recs[2].Line())
			}
		})
	}
}

// TestSystemUserWithConsumerOrgIsInvalid: a request naming both is
// INVALID_ARGUMENT with a BadRequest naming system_user, before the
// policy: nothing is recorded and nothing signed.
func TestSystemUserWithConsumerOrgIsInvalid(t *testing.T) {
	w, e := startSystemUserDaemon(t)
	size := fileSize(t, auditPath(e))
	req := systemUserRequest(mptest.SystemUserCustomer, "")
	req.Scopes, req.ConsumerOrg = []string{mptest.ScopeDelegated}, mptest.ConsumerOrg
	_, _, err := call(t, e, req)
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "system_user: ") {
		t.Fatalf("GetToken = %v %q, want INVALID_ARGUMENT on system_user", st.Code(), st.Message())
	}
	var field string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
			field = br.GetFieldViolations()[0].GetField()
		}
	}
	if field != "system_user" {
		t.Errorf("BadRequest names %q, want system_user", field)
	}
	_, _, err = call(t, e, systemUserRequest("313427138", ""))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "system_user.org: ") {
		t.Errorf("a bad check digit: %v %q", st.Code(), st.Message())
	}
	if grown := fileSize(t, auditPath(e)) - size; grown != 0 || w.Sim.Stats().TokenRequests != 0 {
		t.Fatalf("the audit log grew by %d bytes; %d token requests", grown, w.Sim.Stats().TokenRequests)
	}
}
