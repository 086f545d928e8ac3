package policy

import (
	"slices"
	"strings"
	"testing"
)

// systemUserPolicy has a client with an own rule, a delegation rule and a
// system-user rule, and a second client with another customer.
const systemUserPolicy = `clients:
  - name: billing
    identities: [uid:1000]
    rules:
      - environments: [test, prod]
        scopes: [svv:kjoretoy/ecoc]
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc.delegert]
        consumer_orgs: ["974760673"]
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc, altinn:systembruker.demo]
        system_users: ["313427137", 923456783]
  - name: reports
    identities: [uid:100]
    rules:
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        system_users: ["312345676"]
`

func TestDecideSystemUser(t *testing.T) {
	p, err := Parse("p.yaml", []byte(systemUserPolicy))
	if err != nil {
		t.Fatal(err)
	}
	const (
		ecoc     = "svv:kjoretoy/ecoc"
		demo     = "altinn:systembruker.demo"
		customer = "313427137" // billing's, in the rule at line 10
		second   = "923456783" // billing's too
		theirs   = "312345676" // reports' customer, not billing's
		consumer = "974760673" // billing's consumer_org
	)
	billing := []string{"uid:1000"}
	tests := []struct {
		name    string
		req     Request
		allowed bool
		rules   []string
		reason  string
	}{
		{"a listed system user", Request{Identities: billing, Environment: "prod", Scopes: []string{ecoc}, SystemUserOrg: customer}, true,
			[]string{"p.yaml:10"}, `client "billing" (identity uid:1000) may have scope svv:kjoretoy/ecoc in environment prod for system user 313427137`},
		{"the second listed, two scopes", Request{Identities: billing, Environment: "prod", Scopes: []string{demo, ecoc}, SystemUserOrg: second}, true,
			[]string{"p.yaml:10"}, "for system user 923456783"},
		{"own behalf still by the own rule, not the system users'", Request{Identities: billing, Environment: "prod", Scopes: []string{ecoc}}, true,
			[]string{"p.yaml:5"}, "in environment prod"},
		{"a scope only the system-user rule has, on the client's own behalf", Request{Identities: billing, Environment: "prod", Scopes: []string{demo}}, false,
			nil, `client "billing" has no rule allowing scope altinn:systembruker.demo in environment prod`},
		{"another client's customer", Request{Identities: billing, Environment: "prod", Scopes: []string{ecoc}, SystemUserOrg: theirs}, false,
			nil, `client "billing" has no rule allowing scope svv:kjoretoy/ecoc in environment prod for system user 312345676; its rules for this scope list other system users (system_users)`},
		{"a consumer_org is not a system user", Request{Identities: billing, Environment: "prod", Scopes: []string{"svv:kjoretoy/ecoc.delegert"}, SystemUserOrg: consumer}, false,
			nil, "for system user 974760673"},
		{"a system user is not a consumer_org", Request{Identities: billing, Environment: "prod", Scopes: []string{ecoc}, ConsumerOrg: customer}, false,
			nil, "on behalf of 313427137"},
		{"environment without a system-user rule", Request{Identities: billing, Environment: "test", Scopes: []string{ecoc}, SystemUserOrg: customer}, false,
			nil, `in environment test for system user 313427137; its rule for this scope has no system_users, so it allows the scope on the client's own behalf only`},
		{"one scope not allowed for the system user", Request{Identities: billing, Environment: "prod", Scopes: []string{ecoc, "svv:kjoretoy/leasingtaker"}, SystemUserOrg: customer}, false,
			nil, "scope svv:kjoretoy/leasingtaker in environment prod for system user 313427137"},
		{"both consumer_org and a system user", Request{Identities: billing, Environment: "prod", Scopes: []string{ecoc}, ConsumerOrg: consumer, SystemUserOrg: customer}, false,
			nil, "asked on behalf of 974760673 and for system user 313427137: a request is for a consumer_org or a system user, not both"},
		{"the other client's own customer", Request{Identities: []string{"uid:100"}, Environment: "prod", Scopes: []string{ecoc}, SystemUserOrg: theirs}, true,
			[]string{"p.yaml:16"}, "for system user 312345676"},
		{"a customer value that is not plain is quoted", Request{Identities: billing, Environment: "prod", Scopes: []string{ecoc}, SystemUserOrg: "31342\n7137"}, false,
			nil, `for system user "31342\n7137"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.req)
			if d.Allowed != tt.allowed || !slices.Equal(d.Rules, tt.rules) || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("Decide = allowed %v by %v: %s\nwant allowed %v by %v: …%s", d.Allowed, d.Rules, d.Reason, tt.allowed, tt.rules, tt.reason)
			}
			if strings.Contains(d.Reason, "\n") {
				t.Fatalf("reason has a line break: %q", d.Reason)
			}
		})
	}
}

func TestGrantsListSystemUsers(t *testing.T) {
	p, err := Parse("p.yaml", []byte(systemUserPolicy))
	if err != nil {
		t.Fatal(err)
	}
	g := p.Grants("billing")
	if len(g) != 3 {
		t.Fatalf("%d grants, want 3", len(g))
	}
	if len(g[0].SystemUsers) != 0 || len(g[1].SystemUsers) != 0 || !slices.Equal(g[1].ConsumerOrgs, []string{"974760673"}) {
		t.Errorf("own and delegation grants = %+v, %+v", g[0], g[1])
	}
	if !slices.Equal(g[2].SystemUsers, []string{"313427137", "923456783"}) || len(g[2].ConsumerOrgs) != 0 || g[2].Rule != "p.yaml:10" {
		t.Errorf("system-user grant = %+v", g[2])
	}
	g[2].SystemUsers[0] = "changed"
	if p.Grants("billing")[2].SystemUsers[0] != "313427137" {
		t.Error("Grants shares its slice with the policy")
	}
}

// TestSystemUsersValidation: each mistake in system_users is reported at
// its line, every one in one run.
func TestSystemUsersValidation(t *testing.T) {
	const policy = `clients:
  - name: billing
    identities: [uid:1000]
    rules:
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        system_users: ["313427138", 313427137, "313427137", "31342713"]
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc.delegert]
        consumer_orgs: ["974760673"]
        system_users: ["313427137"]
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        system_users: []
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        system_users: 313427137
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        system_user: ["313427137"]
      - environments: [prod]
        scopes: [svv:kjoretoy/ecoc]
        system_users:
          - {org: "313427137"}
          - 923456783
          - 923456783
`
	_, err := Parse("p.yaml", []byte(policy))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := []string{
		`p.yaml:7: system_users: invalid organisation number "313427138": check digit is 8, want 7`,
		`p.yaml:7: system_users: 313427137 is listed twice (first at line 7): list it once`,
		`p.yaml:7: system_users: invalid organisation number "31342713"`,
		`p.yaml:11: the rule has both consumer_orgs and system_users`,
		`p.yaml:14: system_users is empty`,
		`p.yaml:17: system_users must be a list`,
		`p.yaml:20: unknown key "system_user" in a rule; did you mean "system_users"?`,
		`p.yaml:24: a system user must be a single value, not a mapping`,
		`p.yaml:26: system_users: 923456783 is listed twice (first at line 25): list it once`,
	}
	probs := Problems(err)
	if len(probs) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(probs), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(probs[i].Error(), w) {
			t.Errorf("problem %d = %q\nwant %q…", i, probs[i], w)
		}
	}
}
