package mpsim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/portvakt/portvakt/orgno"
)

// Altinn system users (systembruker): a grant asks for a token on a
// customer's behalf with a Rich Authorization Request (RFC 9396) of type
// urn:altinn:systemuser. Sources: Altinn's "Using System User" guide and
// its MP-303 troubleshooting page (docs.altinn.studio, authorization/
// guides/system-vendor/system-user), Digdir's "Systembruker for
// virksomheter" (maskinporten_func_systembruker) and, for which of MP-301,
// MP-302 and MP-303 is which, Digdir's troubleshooting page as quoted in
// docs/maskinporten.md.

// SystemUserType is the authorization_details type of a system user
// request.
const SystemUserType = "urn:altinn:systemuser"

// OAuth error codes of system user refusals. RFC 9396 section 5 defines
// invalid_authorization_details; Digdir names no error string of its own
// for MP-301 and MP-302. Altinn documents MP-303 as
// invalid_altinn_customer_configuration when no system user matches.
const (
	errInvalidAuthorizationDetails = "invalid_authorization_details"
	errInvalidCustomerConfig       = "invalid_altinn_customer_configuration"
)

// The names an authorization_details object and its systemuser_org may
// carry. They are case-sensitive: Altinn's own token example writes "id"
// in the token, but a grant must say "ID".
var (
	systemUserFields    = []string{"type", "systemuser_org", "externalRef"}
	systemUserOrgFields = []string{"authority", "ID"}
)

// systemUserRequest is a grant's authorization_details, checked for form.
type systemUserRequest struct {
	customer orgno.Number
	// externalRef is nil when the grant has none.
	externalRef *string
}

// authzRefusal is a 400 refusal of authorization_details.
func authzRefusal(oauth, mp, format string, args ...any) *refusal {
	return &refusal{http.StatusBadRequest, oauth, mp, "Invalid authorization_details. " + fmt.Sprintf(format, args...)}
}

// readAuthorizationDetails checks the form of an authorization_details
// claim: an array of exactly one object of type urn:altinn:systemuser
// (else MP-301) with no fields but type, systemuser_org and externalRef,
// and none but authority and ID in systemuser_org (else MP-302), whose
// values are right: authority iso6523-actorid-upis, ID "0192:" and a
// valid organisation number, externalRef a non-empty string (else
// MP-303).
func readAuthorizationDetails(v any) (*systemUserRequest, *refusal) {
	invalid := func(format string, args ...any) *refusal {
		return authzRefusal(errInvalidAuthorizationDetails, CodeAuthzInvalidValue, format, args...)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, invalid("authorization_details must be a JSON array of one object, not %s", jsonType(v))
	}
	if len(list) != 1 {
		return nil, invalid("authorization_details has %d elements; it must have exactly one: one customer per token request", len(list))
	}
	obj, ok := list[0].(map[string]any)
	if !ok {
		return nil, invalid("authorization_details[0] must be an object, not %s", jsonType(list[0]))
	}
	switch typ, ok := obj["type"].(string); {
	case !ok:
		return nil, authzRefusal(errInvalidAuthorizationDetails, CodeAuthzUnknownType, "authorization_details[0] has no type; it must be %q", SystemUserType)
	case typ != SystemUserType:
		return nil, authzRefusal(errInvalidAuthorizationDetails, CodeAuthzUnknownType, "Unknown authorization_details type %q; the only type is %q", typ, SystemUserType)
	}
	if unknown := unknownFields(obj, systemUserFields); unknown != "" {
		return nil, authzRefusal(errInvalidAuthorizationDetails, CodeAuthzUnknownField, "Unknown field(s) in authorization_details[0]: %s; the fields are %s (names are case-sensitive)", unknown, strings.Join(systemUserFields, ", "))
	}
	org, ok := obj["systemuser_org"].(map[string]any)
	if !ok {
		return nil, invalid("systemuser_org must be an object {\"authority\": %q, \"ID\": \"0192:<organisation number>\"}", orgAuthority)
	}
	if unknown := unknownFields(org, systemUserOrgFields); unknown != "" {
		return nil, authzRefusal(errInvalidAuthorizationDetails, CodeAuthzUnknownField, "Unknown field(s) in systemuser_org: %s; the fields are authority and ID (names are case-sensitive)", unknown)
	}
	if a, _ := org["authority"].(string); a != orgAuthority {
		return nil, invalid("systemuser_org.authority must be %q", orgAuthority)
	}
	id, _ := org["ID"].(string)
	num, found := strings.CutPrefix(id, orgICD)
	customer, err := orgno.Parse(num)
	if !found || err != nil {
		return nil, invalid("systemuser_org.ID %q must be \"0192:\" and the customer's nine-digit organisation number", id)
	}
	req := &systemUserRequest{customer: customer}
	if v, present := obj["externalRef"]; present {
		ref, ok := v.(string)
		if !ok || ref == "" {
			return nil, invalid("externalRef must be a non-empty string; leave it out for the default, the customer's organisation number")
		}
		req.externalRef = &ref
	}
	return req, nil
}

// unknownFields lists, sorted and comma-separated, the keys of m not in
// known.
func unknownFields(m map[string]any, known []string) string {
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return strings.Join(unknown, ", ")
}

// findSystemUser is Altinn's lookup: the system user of this client for
// the customer with the grant's externalRef (by default the customer's
// organisation number). Every miss is MP-303
// invalid_altinn_customer_configuration, with a message saying which of
// Altinn's documented causes it is.
func (s *Server) findSystemUser(clientID string, req *systemUserRequest) (SystemUser, *refusal) {
	ref := req.customer.String()
	if req.externalRef != nil {
		ref = *req.externalRef
	}
	var forCustomer []SystemUser
	for _, u := range s.systemUsers {
		if u.ClientID != clientID || u.Customer != req.customer {
			continue
		}
		if u.externalRef() == ref {
			return u, nil
		}
		forCustomer = append(forCustomer, u)
	}
	miss := func(format string, args ...any) *refusal {
		return &refusal{http.StatusBadRequest, errInvalidCustomerConfig, CodeAuthzInvalidValue, fmt.Sprintf(format, args...)}
	}
	switch {
	case len(forCustomer) == 0:
		return SystemUser{}, miss("Invalid Altinn customer configuration: customer %s has no system user for a system with client %q", req.customer, clientID)
	case req.externalRef == nil:
		return SystemUser{}, miss("Invalid Altinn customer configuration: the system user of customer %s was created with an externalRef; the grant must carry it in authorization_details", req.customer)
	default:
		return SystemUser{}, miss("Invalid Altinn customer configuration: customer %s has no system user for client %q with externalRef %q", req.customer, clientID, ref)
	}
}

// systemUserClaim is the authorization_details element of an issued
// token: the type and systemuser_org as asked for, and the system user's
// id and system, as in Altinn's token example.
type systemUserClaim struct {
	Type          string   `json:"type"`
	SystemUserOrg OrgID    `json:"systemuser_org"`
	SystemUserID  []string `json:"systemuser_id"`
	SystemID      string   `json:"system_id"`
}
