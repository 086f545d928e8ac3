package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/portvakt/portvakt/syntax"
)

const goodPolicy = "testdata/good.yaml"

func loadGood(t testing.TB) *Policy {
	t.Helper()
	p, err := Load(goodPolicy)
	if err != nil {
		t.Fatalf("Load(%s): %v", goodPolicy, err)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := loadGood(t)
	const (
		ecoc      = "svv:kjoretoy/ecoc"
		ecocDeleg = "svv:kjoretoy/ecoc.delegert"
		consumer  = "974760673" // listed in good.yaml
		unlisted  = "991825827" // a valid number good.yaml does not list
	)
	tests := []struct {
		name     string
		req      Request
		allowed  bool
		client   string
		identity string
		rules    []string
		reason   string // a substring of the reason
	}{
		{
			name:    "exact scope allowed",
			req:     Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecoc}},
			allowed: true, client: "billing", identity: "uid:1000",
			rules:  []string{"testdata/good.yaml:10"},
			reason: `client "billing" (identity uid:1000) may have scope svv:kjoretoy/ecoc in environment prod`,
		},
		{
			name:   "another scope denied",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
			client: "billing", identity: "uid:1000",
			reason: `client "billing" has no rule allowing scope svv:kjoretoy/leasingtaker in environment prod`,
		},
		{
			name:   "a scope is not a prefix of another",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/eco"}},
			client: "billing", identity: "uid:1000",
			reason: `no rule allowing scope svv:kjoretoy/eco in`,
		},
		{
			name:   "wrong environment denied",
			req:    Request{Identities: []string{"uid:100"}, Environment: "test", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
			client: "reports", identity: "uid:100",
			reason: `client "reports" has no rule allowing scope svv:kjoretoy/leasingtaker in environment test; it is allowed in prod`,
		},
		{
			name:    "delegated scope for a listed consumer",
			req:     Request{Identities: []string{"dns:billing.internal"}, Environment: "test", Scopes: []string{ecocDeleg}, ConsumerOrg: consumer},
			allowed: true, client: "billing", identity: "dns:billing.internal",
			rules:  []string{"testdata/good.yaml:12"},
			reason: "on behalf of 974760673",
		},
		{
			name:   "delegated scope for an unlisted consumer",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "test", Scopes: []string{ecocDeleg}, ConsumerOrg: unlisted},
			client: "billing", identity: "uid:1000",
			reason: `client "billing" has no rule allowing scope svv:kjoretoy/ecoc.delegert in environment test on behalf of 991825827`,
		},
		{
			name:   "delegated scope in an environment without delegation",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{ecocDeleg}, ConsumerOrg: consumer},
			client: "billing", identity: "uid:1000",
			reason: "in environment prod on behalf of 974760673; it is allowed in test",
		},
		{
			name:   "delegated scope without a consumer_org, only a supplier's rule",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "test", Scopes: []string{ecocDeleg}},
			client: "billing", identity: "uid:1000",
			reason: "name the consumers it may act for (give consumer_org), and use on its own behalf needs a rule without consumer_orgs",
		},
		{
			name:   "consumer_org on a scope of a rule without consumer_orgs",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "test", Scopes: []string{ecoc}, ConsumerOrg: consumer},
			client: "billing", identity: "uid:1000",
			reason: "consumer_org is only for delegated (.delegert) scopes",
		},
		{
			name:    "several scopes, all allowed, by two rules",
			req:     Request{Identities: []string{"uid:100"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker", "svv:kjoretoy/forstegangsregistrering", "svv:kjoretoy/midlertidigbrukstillatelse"}},
			allowed: true, client: "reports", identity: "uid:100",
			rules:  []string{"testdata/good.yaml:21", "testdata/good.yaml:25"},
			reason: "may have scopes svv:kjoretoy/leasingtaker, svv:kjoretoy/forstegangsregistrering, svv:kjoretoy/midlertidigbrukstillatelse in environment prod",
		},
		{
			name:   "several scopes, one not allowed",
			req:    Request{Identities: []string{"uid:100"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker", ecoc}},
			client: "reports", identity: "uid:100",
			reason: `client "reports" has no rule allowing scope svv:kjoretoy/ecoc in environment prod`,
		},
		{
			name:   "unknown identity",
			req:    Request{Identities: []string{"uid:1001"}, Environment: "prod", Scopes: []string{ecoc}},
			reason: "no client claims identity uid:1001",
		},
		{
			name:   "unknown Unix peer",
			req:    Request{Identities: syntax.UnixPeerIdentities(1001, 1001), Environment: "prod", Scopes: []string{ecoc}},
			reason: "no client claims identity uid:1001 or gid:1001",
		},
		{
			name:   "no identity",
			req:    Request{Environment: "prod", Scopes: []string{ecoc}},
			reason: "the caller presented no identity",
		},
		{
			name:    "uid preferred over gid",
			req:     Request{Identities: syntax.UnixPeerIdentities(1000, 2000), Environment: "prod", Scopes: []string{ecoc}},
			allowed: true, client: "billing", identity: "uid:1000",
			rules: []string{"testdata/good.yaml:10"},
		},
		{
			name:   "uid preferred over gid, even when only the gid's client is allowed",
			req:    Request{Identities: syntax.UnixPeerIdentities(1000, 2000), Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
			client: "billing", identity: "uid:1000",
			reason: `client "billing" has no rule`,
		},
		{
			name:    "gid when the uid is unknown",
			req:     Request{Identities: syntax.UnixPeerIdentities(1001, 2000), Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
			allowed: true, client: "reports", identity: "gid:2000",
			rules: []string{"testdata/good.yaml:21"},
		},
		{
			name:   "uid:10 is not uid:100",
			req:    Request{Identities: []string{"uid:10"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
			reason: "no client claims identity uid:10",
		},
		{
			name:   "uid:1000 is not uid:100",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
			client: "billing", identity: "uid:1000",
			reason: `client "billing" has no rule`,
		},
		{
			name:   "no leading zeros",
			req:    Request{Identities: []string{"uid:0100"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/leasingtaker"}},
			reason: "no client claims identity uid:0100",
		},
		{
			name:   "a URI is not a prefix of another",
			req:    Request{Identities: []string{"spiffe://portvakt.test/ns/billing/sa/api/x"}, Environment: "prod", Scopes: []string{ecoc}},
			reason: "no client claims identity spiffe://portvakt.test/ns/billing/sa/api/x",
		},
		{
			name:   "a kind of identity is not another",
			req:    Request{Identities: []string{"cn:billing.internal"}, Environment: "prod", Scopes: []string{ecoc}},
			reason: "no client claims identity cn:billing.internal",
		},
		{
			name:    "DNS names are compared in lower case",
			req:     Request{Identities: []string{"dns:Billing.INTERNAL"}, Environment: "prod", Scopes: []string{ecoc}},
			allowed: true, client: "billing", identity: "dns:Billing.INTERNAL",
			rules: []string{"testdata/good.yaml:10"},
		},
		{
			name:   "common names are compared exactly",
			req:    Request{Identities: []string{"cn:Billing-Service"}, Environment: "prod", Scopes: []string{ecoc}},
			reason: "no client claims identity cn:Billing-Service",
		},
		{
			name:    "URI SAN",
			req:     Request{Identities: []string{"spiffe://portvakt.test/ns/billing/sa/api"}, Environment: "test", Scopes: []string{ecoc}},
			allowed: true, client: "billing", identity: "spiffe://portvakt.test/ns/billing/sa/api",
			rules: []string{"testdata/good.yaml:10"},
		},
		{
			name:   "no environment",
			req:    Request{Identities: []string{"uid:1000"}, Scopes: []string{ecoc}},
			client: "billing", identity: "uid:1000",
			reason: `client "billing" asked without naming an environment`,
		},
		{
			name:   "no scope",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "prod"},
			client: "billing", identity: "uid:1000",
			reason: `client "billing" asked for no scope`,
		},
		{
			name:   "request values cannot break the log line",
			req:    Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{"svv:x\nALLOW everything"}},
			client: "billing", identity: "uid:1000",
			reason: `scope "svv:x\nALLOW everything" in environment prod`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.req)
			if d.Allowed != tt.allowed || d.Client != tt.client || d.Identity != tt.identity {
				t.Errorf("Decide = allowed %v, client %q, identity %q; want %v, %q, %q (reason %q)",
					d.Allowed, d.Client, d.Identity, tt.allowed, tt.client, tt.identity, d.Reason)
			}
			if !slices.Equal(d.Rules, tt.rules) {
				t.Errorf("Rules = %q, want %q", d.Rules, tt.rules)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tt.reason)
			}
			if d.Reason == "" || strings.ContainsAny(d.Reason, "\r\n") {
				t.Errorf("Reason %q is not one line", d.Reason)
			}
			// ClientOf must agree with the decision about who the caller is.
			c, id, ok := p.ClientOf(tt.req.Identities)
			if c != d.Client || id != d.Identity || ok != (d.Client != "") {
				t.Errorf("ClientOf = %q, %q, %v; Decide said %q, %q", c, id, ok, d.Client, d.Identity)
			}
		})
	}
}

func TestGrantsAndEnvironments(t *testing.T) {
	p := loadGood(t)
	if got, want := p.Environments(), []string{"prod", "test"}; !slices.Equal(got, want) {
		t.Errorf("Environments() = %q, want %q", got, want)
	}
	if got, want := p.Clients(), []string{"billing", "reports"}; !slices.Equal(got, want) {
		t.Errorf("Clients() = %q, want %q", got, want)
	}
	if p.RuleCount() != 4 {
		t.Errorf("RuleCount() = %d, want 4", p.RuleCount())
	}
	g := p.Grants("billing")
	if len(g) != 2 {
		t.Fatalf("Grants(billing) = %+v, want 2", g)
	}
	if !slices.Equal(g[1].Environments, []string{"test"}) || !slices.Equal(g[1].Scopes, []string{"svv:kjoretoy/ecoc.delegert"}) ||
		!slices.Equal(g[1].ConsumerOrgs, []string{"974760673"}) || g[1].Rule != "testdata/good.yaml:12" {
		t.Errorf("Grants(billing)[1] = %+v", g[1])
	}
	if len(g[0].ConsumerOrgs) != 0 || g[0].Rule != "testdata/good.yaml:10" {
		t.Errorf("Grants(billing)[0] = %+v", g[0])
	}
	// The grants are copies: changing them changes nothing in the policy.
	g[0].Scopes[0] = "svv:kjoretoy/leasingtaker"
	p.Environments()[0] = "staging"
	if d := p.Decide(Request{Identities: []string{"uid:1000"}, Environment: "prod", Scopes: []string{"svv:kjoretoy/ecoc"}}); !d.Allowed {
		t.Errorf("after changing a Grant: %s", d.Reason)
	}
	if p.Environments()[0] != "prod" {
		t.Errorf("Environments() shares its slice")
	}
	if p.Grants("nobody") != nil {
		t.Errorf("Grants(nobody) is not nil")
	}
	if rl, ok := p.RateLimit("billing"); !ok || rl != (RateLimit{PerSecond: 5, Burst: 10}) {
		t.Errorf("RateLimit(billing) = %+v, %v", rl, ok)
	}
	if _, ok := p.RateLimit("reports"); ok {
		t.Errorf("RateLimit(reports): reports has no limit")
	}
}

// TestOwnBehalfDelegatedScope: a consumer may use a .delegert scope on its
// own behalf (the SVV guide: a consumer has both scopes of an API) with a
// rule without consumer_orgs; a rule with consumer_orgs allows the scope
// only for the consumers it names, and neither kind stands in for the
// other.
func TestOwnBehalfDelegatedScope(t *testing.T) {
	const text = `clients:
  - name: consumer
    identities: [uid:200]
    rules:
      - environments: [test]
        scopes: [svv:kjoretoy/ecoc, svv:kjoretoy/ecoc.delegert]
  - name: supplier
    identities: [uid:300]
    rules:
      - environments: [test]
        scopes: [svv:kjoretoy/ecoc.delegert]
        consumer_orgs: ["974760673"]
`
	p, err := Parse("own.yaml", []byte(text))
	if err != nil {
		t.Fatalf("a rule with a .delegert scope and no consumer_orgs is refused: %v", err)
	}
	const deleg = "svv:kjoretoy/ecoc.delegert"
	tests := []struct {
		name    string
		req     Request
		allowed bool
		rules   []string
		reason  string
	}{
		{
			name:    "consumer, own behalf",
			req:     Request{Identities: []string{"uid:200"}, Environment: "test", Scopes: []string{deleg}},
			allowed: true, rules: []string{"own.yaml:5"},
			reason: `client "consumer" (identity uid:200) may have scope svv:kjoretoy/ecoc.delegert in environment test`,
		},
		{
			name:    "consumer, both scopes of the API at once",
			req:     Request{Identities: []string{"uid:200"}, Environment: "test", Scopes: []string{"svv:kjoretoy/ecoc", deleg}},
			allowed: true, rules: []string{"own.yaml:5"},
		},
		{
			name:   "consumer, on behalf of another organisation",
			req:    Request{Identities: []string{"uid:200"}, Environment: "test", Scopes: []string{deleg}, ConsumerOrg: "974760673"},
			reason: "its rule for this scope has no consumer_orgs, so it allows the scope on the client's own behalf only",
		},
		{
			name:    "supplier, for a listed consumer",
			req:     Request{Identities: []string{"uid:300"}, Environment: "test", Scopes: []string{deleg}, ConsumerOrg: "974760673"},
			allowed: true, rules: []string{"own.yaml:10"},
			reason: "on behalf of 974760673",
		},
		{
			name:   "supplier, without consumer_org",
			req:    Request{Identities: []string{"uid:300"}, Environment: "test", Scopes: []string{deleg}},
			reason: "its rules for this scope name the consumers it may act for (give consumer_org), and use on its own behalf needs a rule without consumer_orgs",
		},
		{
			name:   "consumer, in another environment",
			req:    Request{Identities: []string{"uid:200"}, Environment: "prod", Scopes: []string{deleg}},
			reason: `client "consumer" has no rule allowing scope svv:kjoretoy/ecoc.delegert in environment prod; it is allowed in test`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.req)
			if d.Allowed != tt.allowed {
				t.Fatalf("Allowed = %v (%s), want %v", d.Allowed, d.Reason, tt.allowed)
			}
			if !slices.Equal(d.Rules, tt.rules) {
				t.Errorf("Rules = %q, want %q", d.Rules, tt.rules)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to say %q", d.Reason, tt.reason)
			}
		})
	}
	if g := p.Grants("consumer"); len(g) != 1 || len(g[0].ConsumerOrgs) != 0 || !slices.Contains(g[0].Scopes, deleg) {
		t.Errorf("Grants(consumer) = %+v, want one own-behalf rule with the .delegert scope", g)
	}
}
