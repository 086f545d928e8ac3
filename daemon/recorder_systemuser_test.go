package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/portvakt/portvakt/identity"
	"github.com/portvakt/portvakt/maskinporten"
	"github.com/portvakt/portvakt/policy"
	"github.com/portvakt/portvakt/tokencache"
	"github.com/portvakt/portvakt/tokenservice"
)

// TestRecorderNamesTheSystemUser: every record of a system-user request
// names the customer and the external reference; a request without one
// names neither; tokens handed out are counted by kind, and only once on
// record.
func TestRecorderNamesTheSystemUser(t *testing.T) {
	r, path := testRecorder(t)
	ctx := context.Background()
	caller := identity.Caller{Transport: identity.TransportUnix, Identities: []string{"uid:7", "gid:7"}}
	scopes := []string{"svv:kjoretoy/ecoc"}
	su := tokencache.NewKey("prod", "c", scopes, "", tokencache.OnBehalfOf{SystemUserOrg: "313427137", SystemUserRef: "ref-1"})
	own := tokencache.NewKey("prod", "c", scopes, "", tokencache.OnBehalfOf{})
	allow := policy.Decision{Allowed: true, Client: "billing", Rules: []string{"policy.yaml:3"}, Reason: "allowed"}
	deny := policy.Decision{Client: "billing", Reason: "no rule … for system user 313427137"}
	tok := &maskinporten.Token{GrantJTI: "jti-1", ExpiresAt: time.Now().Add(time.Minute)}
	steps := []error{
		r.Decision(ctx, &tokenservice.Decision{Caller: caller, Request: su, Decision: allow}),
		r.Outcome(ctx, tokenservice.Outcome{Caller: caller, Request: su, Decision: allow, Token: tok}),
		r.Decision(ctx, &tokenservice.Decision{Caller: caller, Request: su, Decision: allow, Cached: tok}),
		r.Outcome(ctx, tokenservice.Outcome{Caller: caller, Request: su, Decision: allow, Err: &maskinporten.Error{Status: 400, Code: "invalid_request", MPCode: "MP-303"}}),
		r.Decision(ctx, &tokenservice.Decision{Caller: caller, Request: su, Decision: deny}),
		r.Decision(ctx, &tokenservice.Decision{Caller: caller, Request: own, Decision: allow, Cached: tok}),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
	recs := records(t, path)[1:] // after the start record
	if len(recs) != len(steps) {
		t.Fatalf("%d records, want %d", len(recs), len(steps))
	}
	for i, rec := range recs[:5] {
		if rec.SystemUserOrg != "313427137" || rec.SystemUserRef != "ref-1" || rec.ConsumerOrg != "" {
			t.Errorf("record %d (%s %s%s) names system user %q ref %q", i, rec.Kind, rec.Decision, rec.Outcome, rec.SystemUserOrg, rec.SystemUserRef)
		}
		if !strings.Contains(string(rec.Line()), `"system_user_org":"313427137","system_user_ref":"ref-1"`) {
			t.Errorf("record %d: %s", i, rec.Line())
		}
	}
	if recs[3].MPCode != "MP-303" || recs[3].Outcome != tokenservice.OutcomeMaskinportenRefused || recs[4].Decision != "deny" {
		t.Errorf("refusal %+v, denial %+v", recs[3], recs[4])
	}
	if last := recs[5]; last.SystemUserOrg != "" || last.SystemUserRef != "" || strings.Contains(string(last.Line()), "system_user") {
		t.Errorf("a record without a system user: %s", last.Line())
	}
	for kind, want := range map[string]float64{"system_user": 2, "own": 1, "delegated": 0} {
		var m dto.Metric
		if err := r.m.Tokens.WithLabelValues("prod", kind).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("tokens_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}
}

// TestSystemUserRecordAtEveryBound: a system-user request with every
// field at its bound, the external reference made of the characters JSON
// escapes most (six bytes each), and the longest error an outcome keeps,
// still fits a record.
func TestSystemUserRecordAtEveryBound(t *testing.T) {
	r, path := testRecorder(t)
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	caller := identity.Caller{Transport: identity.TransportMTLS, Identities: []string{long("spiffe://portvakt.test/", 256)}}
	var scopes []string
	for i := range 4 {
		scopes = append(scopes, long(fmt.Sprintf("svv:%d/", i), 128))
	}
	key := tokencache.NewKey(long("env-", 64), "c", scopes, long("https://api.example/", 256),
		tokencache.OnBehalfOf{SystemUserOrg: "313427137", SystemUserRef: strings.Repeat("<", 128)})
	reason := fmt.Sprintf("client %q has no rule allowing scope %s in environment %s for system user 313427137", "billing", strings.Join(scopes, ", "), key.Environment)
	err := errors.Join(
		r.Decision(context.Background(), &tokenservice.Decision{Caller: caller, Request: key, Decision: policy.Decision{Client: "billing", Reason: reason}}),
		r.Outcome(context.Background(), tokenservice.Outcome{Caller: caller, Request: key, Decision: policy.Decision{Allowed: true, Client: "billing"},
			Err: fmt.Errorf("Maskinporten refused: %s", strings.Repeat("x", 4096))}),
	)
	if err != nil {
		t.Fatal(err)
	}
	var longest int
	for _, rec := range records(t, path)[1:] {
		if rec.SystemUserRef != key.SystemUserRef {
			t.Fatalf("record %s lost the reference", rec.Kind)
		}
		longest = max(longest, len(rec.Line()))
	}
	if longest > maxRecordBytes || longest == 0 {
		t.Fatalf("longest record %d bytes", longest)
	}
	t.Logf("the longest system-user record at every bound is %d bytes", longest)
}
