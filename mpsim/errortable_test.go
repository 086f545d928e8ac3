package mpsim

import (
	"strings"
	"testing"
	"time"
)

// TestErrorTable makes, with a real grant where it can, each refusal of
// the error table in docs/maskinporten.md and checks its HTTP status,
// OAuth error and MP code. MP-201 (a scope not allowed for Maskinporten)
// is missing: the simulator has no registry of scopes of other
// integration types, so it cannot produce that condition.
func TestErrorTable(t *testing.T) {
	f := getFixture(t)
	setClaim := func(k string, v any) func(h, c map[string]any) {
		return func(_, c map[string]any) { c[k] = v }
	}
	delegated := func(consumer string) func(h, c map[string]any) {
		return func(_, c map[string]any) { c["scope"] = scopeDelegert; c["consumer_org"] = consumer }
	}
	tests := []struct {
		row     string // the table's meaning
		spec    func(s *sim) grantSpec
		edit    func(h, c map[string]any)
		status  int
		err, mp string
	}{
		{row: "client not found (wrong iss)", edit: setClaim("iss", "no-such-client"), status: 400, err: "invalid_grant", mp: "MP-100"},
		{row: "client not found (kid of no client)", edit: func(h, c map[string]any) { delete(h, "x5c"); h["kid"] = "nope" }, status: 400, err: "invalid_grant", mp: "MP-100"},
		{row: "invalid aud (token endpoint)", spec: func(s *sim) grantSpec { return grantSpec{now: time.Now(), issuer: s.url + "token"} }, status: 400, err: "invalid_grant", mp: "MP-110"},
		{row: "certificate not valid here", edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.untrusted, f.otherCA.Issuing) }, status: 400, err: "invalid_grant", mp: "MP-120"},
		{row: "expired certificate", spec: func(s *sim) grantSpec {
			// The simulator's clock, moved past the certificate's end by
			// the clock offset.
			s.SetClockOffset(time.Until(f.shortLived.NotAfter) + time.Minute)
			return grantSpec{now: s.now(), issuer: s.url, edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.shortLived, f.ca.Issuing) }}
		}, status: 400, err: "invalid_grant", mp: "MP-121"},
		{row: "certificate of another organisation", edit: func(h, _ map[string]any) { h["x5c"] = x5c(f.wrongOrg, f.ca.Issuing) }, status: 400, err: "invalid_grant", mp: "MP-122"},
		{row: "invalid x5c", edit: func(h, _ map[string]any) { h["x5c"] = []any{"AAAA"} }, status: 400, err: "invalid_grant", mp: "MP-123"},
		{row: "invalid signature", spec: func(s *sim) grantSpec { return grantSpec{now: time.Now(), issuer: s.url, key: f.otherKey} }, status: 400, err: "invalid_grant", mp: "MP-124"},
		{row: "issue time is after now", spec: func(s *sim) grantSpec { return grantSpec{now: time.Now().Add(time.Minute), issuer: s.url} }, status: 400, err: "invalid_grant", mp: "MP-130"},
		{row: "JWT expired", spec: shifted(-10*time.Second, 5*time.Second), status: 400, err: "invalid_grant", mp: "MP-130"},
		{row: "invalid parameter value (consumer_org not an org number)", edit: delegated("974760674"), status: 400, err: "invalid_request", mp: "MP-011"},
		{row: "invalid parameter value (consumer_org the client's own)", edit: delegated(string(supplierOrg)), status: 400, err: "invalid_request", mp: "MP-011"},
		{row: "invalid parameter value (unknown claim)", edit: setClaim("sub", clientID), status: 400, err: "invalid_request", mp: "MP-011"},
		{row: "invalid parameter value (two resources)", edit: setClaim("resource", []any{"https://a.example/", "https://b.example/"}), status: 400, err: "invalid_request", mp: "MP-011"},
		{row: "scope not granted to the client", edit: setClaim("scope", "svv:kjoretoy/leasingtaker"), status: 400, err: "invalid_scope", mp: "MP-200"},
		{row: "consumer not itself granted the scope", edit: delegated(string(lonelyConsumer)), status: 403, err: "forbidden", mp: "MP-250"},
		{row: "scope not delegated to this supplier (to another)", edit: delegated(string(otherConsumer)), status: 403, err: "forbidden", mp: "MP-251"},
		{row: "scope not delegated to this supplier (to nobody)", edit: func(_, c map[string]any) { c["consumer_org"] = string(consumerOrg) }, status: 403, err: "forbidden", mp: "MP-251"},
		{row: "authorization_details of an unknown type", edit: editDetails(func(obj, _ map[string]any) { obj["type"] = "urn:example:other" }), status: 400, err: "invalid_authorization_details", mp: "MP-301"},
		{row: "authorization_details with an unknown field", edit: editDetails(func(obj, _ map[string]any) { obj["ExternalRef"] = externalRef }), status: 400, err: "invalid_authorization_details", mp: "MP-302"},
		{row: "authorization_details with an invalid value", edit: editDetails(func(_, org map[string]any) { org["ID"] = "0192:123" }), status: 400, err: "invalid_authorization_details", mp: "MP-303"},
		{row: "no system user matches", edit: setClaim("authorization_details", systemUserDetails(consumerOrg, "")), status: 400, err: "invalid_altinn_customer_configuration", mp: "MP-303"},
		{row: "externalRef missing", edit: setClaim("authorization_details", systemUserDetails(customerWithRef, "")), status: 400, err: "invalid_altinn_customer_configuration", mp: "MP-303"},
	}
	s := startSim(t, func(c *Config) {
		withSystemUsers(c)
		// lonelyConsumer is known to have no access of its own;
		// consumerOrg and otherConsumer are not listed, so only their
		// delegations count.
		c.ConsumerAccess = []ConsumerAccess{{Org: lonelyConsumer, Scopes: []string{scopeECOC}}}
		c.Delegations = append(c.Delegations, Delegation{ConsumerOrg: lonelyConsumer, SupplierClientID: clientID, Scopes: []string{scopeDelegert}})
	})
	for _, tt := range tests {
		t.Run(tt.mp+" "+tt.row, func(t *testing.T) {
			t.Cleanup(func() { s.SetClock(nil); s.SetClockOffset(0) })
			var g string
			if tt.spec != nil {
				g = tt.spec(s).build(t)
			} else {
				g = s.grant(t, tt.edit)
			}
			r := s.post(t, g)
			if r.status != tt.status || r.err != tt.err || r.mp != tt.mp {
				t.Errorf("got %d %s %s %q\nwant %d %s %s", r.status, r.err, r.mp, r.message, tt.status, tt.err, tt.mp)
			}
		})
	}

	// MP-012, the grant used before: the same grant twice.
	t.Run("MP-012 grant used before", func(t *testing.T) {
		g := s.grant(t, nil)
		if r := s.post(t, g); r.status != 200 {
			t.Fatalf("first use: %d %s", r.status, r.mp)
		}
		if r := s.post(t, g); r.status != 400 || r.err != "invalid_grant" || r.mp != "MP-012" || !strings.Contains(r.message, "Grant is used before") {
			t.Errorf("got %d %s %s %q, want 400 invalid_grant MP-012", r.status, r.err, r.mp, r.message)
		}
	})
}
