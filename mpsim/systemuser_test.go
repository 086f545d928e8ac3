package mpsim

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/portvakt/portvakt/orgno"
)

// System users of the tests: customerWithRef created one for portvakt-demo
// with an external ref, customerPlain one without (Altinn's default, the
// organisation number), and lonelyConsumer one for other-supplier only.
const (
	customerWithRef orgno.Number = "313775429"
	customerPlain   orgno.Number = "311111116"
	externalRef                  = "kunde-1"
	systemID                     = "991825827_portvakt"
	systemUserID                 = "704013ee-e82a-433e-83c5-a40e6e00d746"
)

func withSystemUsers(c *Config) {
	c.SystemUsers = []SystemUser{
		{ClientID: clientID, SystemID: systemID, Customer: customerWithRef, ExternalRef: externalRef, ID: systemUserID},
		{ClientID: clientID, SystemID: systemID, Customer: customerPlain},
		{ClientID: otherClientID, SystemID: "910000004_other", Customer: lonelyConsumer},
	}
}

// systemUserDetails is an authorization_details claim for customer, with
// externalRef when ref is not "".
func systemUserDetails(customer orgno.Number, ref string) []any {
	obj := map[string]any{
		"type":           SystemUserType,
		"systemuser_org": map[string]any{"authority": "iso6523-actorid-upis", "ID": "0192:" + customer.String()},
	}
	if ref != "" {
		obj["externalRef"] = ref
	}
	return []any{obj}
}

// editDetails changes the first object of a system user request for
// customerWithRef with its external ref.
func editDetails(f func(obj, org map[string]any)) func(h, c map[string]any) {
	return func(_, c map[string]any) {
		d := systemUserDetails(customerWithRef, externalRef)
		obj := d[0].(map[string]any)
		f(obj, obj["systemuser_org"].(map[string]any))
		c["authorization_details"] = d
	}
}

func TestSystemUserRefusals(t *testing.T) {
	setDetails := func(v any) func(h, c map[string]any) {
		return func(_, c map[string]any) { c["authorization_details"] = v }
	}
	asFor := func(customer orgno.Number, ref string) func(h, c map[string]any) {
		return setDetails(systemUserDetails(customer, ref))
	}
	const (
		badDetails  = "invalid_authorization_details"
		badCustomer = "invalid_altinn_customer_configuration"
	)
	tests := []struct {
		name    string
		edit    func(h, c map[string]any)
		status  int
		err, mp string
		msg     string
	}{
		// Form: invalid values, MP-303.
		{"an object, not an array", setDetails(systemUserDetails(customerWithRef, externalRef)[0]), 400, badDetails, "MP-303", "must be a JSON array of one object, not an object"},
		{"a string", setDetails(SystemUserType), 400, badDetails, "MP-303", "not a string"},
		{"empty array", setDetails([]any{}), 400, badDetails, "MP-303", "has 0 elements"},
		{"two customers", setDetails(append(systemUserDetails(customerWithRef, externalRef), systemUserDetails(customerPlain, "")...)), 400, badDetails, "MP-303", "has 2 elements; it must have exactly one"},
		{"element a string", setDetails([]any{"x"}), 400, badDetails, "MP-303", "authorization_details[0] must be an object"},
		{"no systemuser_org", editDetails(func(obj, _ map[string]any) { delete(obj, "systemuser_org") }), 400, badDetails, "MP-303", "systemuser_org must be an object"},
		{"systemuser_org a string", editDetails(func(obj, _ map[string]any) { obj["systemuser_org"] = "0192:313775429" }), 400, badDetails, "MP-303", "systemuser_org must be an object"},
		{"wrong authority", editDetails(func(_, org map[string]any) { org["authority"] = "iso6523" }), 400, badDetails, "MP-303", "authority must be"},
		{"no authority", editDetails(func(_, org map[string]any) { delete(org, "authority") }), 400, badDetails, "MP-303", "authority must be"},
		{"ID without 0192", editDetails(func(_, org map[string]any) { org["ID"] = "313775429" }), 400, badDetails, "MP-303", `systemuser_org.ID "313775429"`},
		{"ID with wrong ICD", editDetails(func(_, org map[string]any) { org["ID"] = "0007:313775429" }), 400, badDetails, "MP-303", "systemuser_org.ID"},
		{"ID with bad check digit", editDetails(func(_, org map[string]any) { org["ID"] = "0192:313775428" }), 400, badDetails, "MP-303", "systemuser_org.ID"},
		{"ID a number", editDetails(func(_, org map[string]any) { org["ID"] = 313775429 }), 400, badDetails, "MP-303", "systemuser_org.ID"},
		{"externalRef empty", editDetails(func(obj, _ map[string]any) { obj["externalRef"] = "" }), 400, badDetails, "MP-303", "externalRef must be a non-empty string"},
		{"externalRef a number", editDetails(func(obj, _ map[string]any) { obj["externalRef"] = 1 }), 400, badDetails, "MP-303", "externalRef must be a non-empty string"},

		// Type: MP-301.
		{"no type", editDetails(func(obj, _ map[string]any) { delete(obj, "type") }), 400, badDetails, "MP-301", "has no type"},
		{"unknown type", editDetails(func(obj, _ map[string]any) { obj["type"] = "urn:altinn:systembruker" }), 400, badDetails, "MP-301", `Unknown authorization_details type "urn:altinn:systembruker"`},
		{"type a number", editDetails(func(obj, _ map[string]any) { obj["type"] = 1 }), 400, badDetails, "MP-301", "has no type"},

		// Fields: MP-302, names case-sensitive.
		{"unknown field", editDetails(func(obj, _ map[string]any) { obj["systemuser_id"] = "x" }), 400, badDetails, "MP-302", "Unknown field(s) in authorization_details[0]: systemuser_id"},
		{"externalref lower case", editDetails(func(obj, _ map[string]any) { obj["externalref"] = obj["externalRef"]; delete(obj, "externalRef") }), 400, badDetails, "MP-302", "externalref"},
		{"systemuser_org id lower case", editDetails(func(_, org map[string]any) { org["id"] = org["ID"]; delete(org, "ID") }), 400, badDetails, "MP-302", "Unknown field(s) in systemuser_org: id"},
		{"systemuser_org extra field", editDetails(func(_, org map[string]any) { org["name"] = "Kunde AS" }), 400, badDetails, "MP-302", "systemuser_org: name"},

		// Altinn's lookup: MP-303 invalid_altinn_customer_configuration.
		{"customer without system user", asFor(consumerOrg, ""), 400, badCustomer, "MP-303", "customer 974760673 has no system user"},
		{"system user of another client", asFor(lonelyConsumer, ""), 400, badCustomer, "MP-303", `customer 987654325 has no system user for a system with client "portvakt-demo"`},
		{"externalRef missing", asFor(customerWithRef, ""), 400, badCustomer, "MP-303", "was created with an externalRef"},
		{"externalRef wrong", asFor(customerWithRef, "kunde-2"), 400, badCustomer, "MP-303", `externalRef "kunde-2"`},
		{"externalRef where none was set", asFor(customerPlain, "kunde-1"), 400, badCustomer, "MP-303", `externalRef "kunde-1"`},
		{"org number as externalRef of a system user with another", asFor(customerWithRef, customerWithRef.String()), 400, badCustomer, "MP-303", "externalRef"},

		// The rest of the grant still counts.
		{"with consumer_org", func(h, c map[string]any) {
			asFor(customerWithRef, externalRef)(h, c)
			c["consumer_org"] = string(consumerOrg)
		}, 400, "invalid_request", "MP-011", "consumer_org (API delegation) or authorization_details (an Altinn system user), not both"},
		{"no scope", func(h, c map[string]any) { asFor(customerWithRef, externalRef)(h, c); delete(c, "scope") }, 400, "invalid_request", "MP-011", "Missing claim(s): scope"},
		{"scope not granted", func(h, c map[string]any) {
			asFor(customerWithRef, externalRef)(h, c)
			c["scope"] = "svv:kjoretoy/leasingtaker"
		}, 400, "invalid_scope", "MP-200", "svv:kjoretoy/leasingtaker"},
	}
	s := startSim(t, withSystemUsers)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.post(t, s.grant(t, tt.edit))
			if r.status != tt.status || r.err != tt.err || r.mp != tt.mp || !strings.Contains(r.message, tt.msg) {
				t.Errorf("got %d %s %s %q\nwant %d %s %s containing %q", r.status, r.err, r.mp, r.message, tt.status, tt.err, tt.mp, tt.msg)
			}
		})
	}
	if st := s.Stats(); st.Issued != 0 {
		t.Errorf("%d tokens issued, want none", st.Issued)
	}
}

func TestSystemUserToken(t *testing.T) {
	s := startSim(t, withSystemUsers)
	var plainID string
	for _, u := range s.SystemUsers() {
		if u.Customer == customerPlain {
			plainID = u.ID
		}
	}
	if _, err := uuid.Parse(plainID); err != nil {
		t.Fatalf("New gave the system user without an id %q, not a UUID", plainID)
	}
	tests := []struct {
		name     string
		customer orgno.Number
		ref      string
		wantID   string
	}{
		{"with its external ref", customerWithRef, externalRef, systemUserID},
		{"default external ref left out", customerPlain, "", plainID},
		{"default external ref sent", customerPlain, customerPlain.String(), plainID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.post(t, s.grant(t, func(_, c map[string]any) { c["authorization_details"] = systemUserDetails(tt.customer, tt.ref) }))
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s %s %q, want 200", r.status, r.err, r.mp, r.message)
			}
			if r.token.Scope != scopeECOC {
				t.Errorf("scope %q, want %q", r.token.Scope, scopeECOC)
			}
			claims := s.verifyAccessToken(t, r.token.AccessToken)
			want := []any{map[string]any{
				"type":           "urn:altinn:systemuser",
				"systemuser_org": orgClaim(tt.customer.String()),
				"systemuser_id":  []any{tt.wantID},
				"system_id":      systemID,
			}}
			if !reflect.DeepEqual(claims["authorization_details"], want) {
				t.Errorf("authorization_details = %#v\nwant %#v", claims["authorization_details"], want)
			}
			// The consumer is the client's own organisation, as in
			// Altinn's token example; no delegation claims.
			if !reflect.DeepEqual(claims["consumer"], orgClaim(supplierOrg.String())) {
				t.Errorf("consumer = %#v, want the client's organisation %s", claims["consumer"], supplierOrg)
			}
			for _, k := range []string{"supplier", "delegation_source", "aud"} {
				if v, ok := claims[k]; ok {
					t.Errorf("claim %s = %#v, want absent", k, v)
				}
			}
		})
	}
	// Without authorization_details, a token has none.
	r := s.post(t, s.grant(t, nil))
	if r.status != http.StatusOK {
		t.Fatalf("plain grant: %d %s", r.status, r.mp)
	}
	if v, ok := s.verifyAccessToken(t, r.token.AccessToken)["authorization_details"]; ok {
		t.Errorf("plain token has authorization_details %#v", v)
	}
}

func TestSystemUserValidation(t *testing.T) {
	f := getFixture(t)
	tests := []struct {
		name string
		user SystemUser
		want string
	}{
		{"unknown client", SystemUser{ClientID: "ghost", SystemID: systemID, Customer: customerPlain}, `client "ghost", which is not configured`},
		{"no system id", SystemUser{ClientID: clientID, Customer: customerPlain}, "has no system id"},
		{"bad customer", SystemUser{ClientID: clientID, SystemID: systemID, Customer: "313775428"}, "customer: invalid organisation number"},
		{"id not a UUID", SystemUser{ClientID: clientID, SystemID: systemID, Customer: customerPlain, ID: "42"}, `id "42" is not a UUID`},
		{"same customer and ref twice", SystemUser{ClientID: clientID, SystemID: systemID, Customer: customerWithRef, ExternalRef: externalRef}, "configured more than once"},
		{"default ref spelt out twice", SystemUser{ClientID: clientID, SystemID: systemID, Customer: customerPlain, ExternalRef: customerPlain.String()}, "configured more than once"},
		{"id used twice", SystemUser{ClientID: clientID, SystemID: systemID, Customer: consumerOrg, ID: systemUserID}, "is used by another system user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config("http://127.0.0.1:8089/")
			withSystemUsers(&cfg)
			cfg.SystemUsers = append(cfg.SystemUsers, tt.user)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
