// Package mpsim is a strict local simulator of Maskinporten's token
// endpoint, for development and tests. It is an http.Handler, so tests can
// run it in-process behind httptest.NewServer (real HTTP), and
// cmd/maskinporten-sim serves it on a loopback port.
//
// Strict means it refuses what Maskinporten refuses, with the same HTTP
// status, OAuth error and MP code, and sometimes more: a client that works
// against it should work against Maskinporten. It serves, below the path
// of the issuer (or of Config.BaseURL, if set):
//
//	POST token                                 JWT bearer grant → access token
//	GET  .well-known/oauth-authorization-server metadata (RFC 8414)
//	GET  jwk                                   the access-token signing key
//	GET  api/v1/clients/{client_id}/jwks       Digdir's self-service API: an integration's registered keys
//	POST api/v1/clients/{client_id}/jwks       (PUT too) replaces them, the whole set
//
// # Token request checks
//
// A token request is checked in this order, and the first failure is the
// answer (status, error, MP code):
//
//  1. POST (else 405), application/x-www-form-urlencoded, body ≤ 64 KiB,
//     no URL query, no repeated parameter, grant_type
//     urn:ietf:params:oauth:grant-type:jwt-bearer, a non-empty assertion:
//     400 invalid_request MP-011.
//  2. The assertion's jti is recorded (Stats.JTIs); then faults are
//     injected (see Faults): latency, dropped connection, 503 server_error,
//     429 too_many_requests with Retry-After: 1.
//  3. A compact JWS with alg RS256, RS384 or RS512, no crit, and x5c or
//     kid (or both): 400 invalid_grant MP-011.
//  4. x5c: standard-base64 DER certificates, leaf first, each signed by the
//     next (MP-123), leading to a trust root (MP-120), all valid now
//     (MP-121). kid: registered for the client named by iss and accepted
//     now (MP-100; an expired registered key MP-121). Both: the leaf must
//     certify the registered key (MP-123), which pins it to the certificate.
//  5. The signature verifies with that key and the declared alg: MP-124.
//  6. Only aud, iss, scope, resource, iat, exp, jti, consumer_org and
//     authorization_details, with aud, iss, scope, iat, exp and jti present
//     and of the right type: 400 invalid_request MP-011 (an aud array:
//     MP-110). resource is a string or an array of one string (more than
//     one: MP-011, as a token has one audience). consumer_org and
//     authorization_details together: MP-011. authorization_details must
//     be an array of one object of type urn:altinn:systemuser (400
//     invalid_authorization_details MP-301), with no fields but type,
//     systemuser_org (authority, ID) and externalRef, case-sensitive
//     (MP-302), and valid values: authority iso6523-actorid-upis, ID
//     "0192:" and an organisation number, externalRef a non-empty string
//     (MP-303).
//  7. aud equals the issuer exactly: 400 invalid_grant MP-110.
//  8. |iat - now| ≤ clock skew, exp - iat ≤ 120 s, exp > iat, exp > now:
//     400 invalid_grant MP-130. "now" is the simulator's clock: the real
//     time plus Config.ClockOffset.
//  9. iss is a registered client: 400 invalid_grant MP-100.
//  10. With x5c, the certificate's organisation number is the client's:
//     MP-122.
//  11. The jti was never accepted before: 400 invalid_grant MP-012. From
//     here on the jti is burned, even if a later check fails.
//  12. Every scope is registered for the client: 400 invalid_scope MP-200.
//  13. With authorization_details: a system user (Config.SystemUsers) of
//     this client for the customer in systemuser_org whose external ref
//     (by default the customer's organisation number) equals the grant's
//     externalRef (or the default, when the grant has none); else 400
//     invalid_altinn_customer_configuration MP-303. With consumer_org: a
//     valid organisation number other than the client's own (400
//     invalid_request MP-011); if Config.ConsumerAccess lists the
//     consumer, it has been granted every scope (else 403 forbidden
//     MP-250); and it has delegated every scope to this client (else 403
//     forbidden MP-251).
//
// Refusals are JSON {"error", "error_description"}, the description in
// DescriptionFormat: "<message> (MP-xxx) [trace_id: <16 hex digits>]". Every
// response carries the trace id in X-Trace-Id, and a Date header with the
// simulator's time (the real time plus Config.ClockOffset), as
// Maskinporten's responses carry its own.
//
// A successful answer is {"access_token", "token_type": "Bearer",
// "expires_in", "scope"} with Cache-Control: no-store. The access token is
// an RS256 JWT signed with the key at /jwk (header kid), with claims iss,
// client_id, scope, token_type, iat, exp, jti, client_amr
// ("virksomhetssertifikat" or "private_key_jwt") and consumer; a delegated
// token also has supplier and delegation_source; aud is the grant's
// resource, if it had one. A system user token has authorization_details
// [{"type": "urn:altinn:systemuser", "systemuser_org": as asked,
// "systemuser_id": [the system user's id], "system_id": its system}], and
// its consumer is the client's own organisation, as in Altinn's example.
//
// # Configuration file
//
// LoadConfig reads YAML like this (testdata/example.yaml). Unknown keys are
// errors; relative paths are resolved against the file's directory.
//
//	issuer: http://127.0.0.1:8089/         # must end with "/"; optional for cmd/maskinporten-sim
//	token_lifetime: 120s                   # expires_in of access tokens; default 120s
//	clock_skew: 10s                        # allowed |iat - now|; default 10s
//	clock_offset: 0s                       # the simulator's clock is the real one plus this; default 0s
//	key_activation_delay: 0s               # a key registered through the self-service API is accepted after this; default 0s
//	registered_key_lifetime: 8760h         # ...and for this long; default and at most a year
//	trust_roots: [ca/root.pem]             # PEM files of CA certificates x5c chains must lead to
//	clients:
//	  - client_id: portvakt-demo           # the grant's iss
//	    org_number: "991825827"            # quote it: it is a string of nine digits
//	    scopes: [svv:kjoretoy/ecoc, svv:kjoretoy/ecoc.delegert]
//	    keys:                              # optional: keys for grants with kid instead of x5c
//	      - {kid: my-key, public_key: keys/my-key.pub.pem}  # PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM
//	delegations:                           # optional: consumer_org → supplier client
//	  - consumer_org: "974760673"
//	    supplier_client_id: portvakt-demo
//	    scopes: [svv:kjoretoy/ecoc.delegert]  # each must be one of the supplier's scopes
//	consumer_access:                       # optional: an organisation's own scopes; a listed consumer
//	  - org: "974760673"                   #   lacking a scope it asks for with consumer_org gets MP-250
//	    scopes: [svv:kjoretoy/ecoc, svv:kjoretoy/ecoc.delegert]
//	system_users:                          # optional: Altinn system users, for authorization_details
//	  - client_id: portvakt-demo           # the supplier's client
//	    system_id: 991825827_portvakt      # Altinn's system id
//	    customer: "313775429"              # the customer that created the system user
//	    external_ref: kunde-1              # optional; default the customer's organisation number
//	    id: 704013ee-e82a-433e-83c5-a40e6e00d746  # optional UUID; default a new one
//	faults: {latency: 0s, server_error_rate: 0, too_many_requests_rate: 0, drop_rate: 0, self_service_down: false}
//
// # The self-service API's registered keys
//
// Requests carry "Authorization: Bearer" and an access token this
// simulator issued for idporten:dcr.read (GET), or idporten:dcr.modify or
// idporten:dcr.write (POST, PUT), to a client whose grant was signed with
// an enterprise certificate (x5c) and that belongs to the organisation
// owning the integration; else 401 invalid_token or 403. An integration's
// set holds at most 5 RSA keys of at least 2048 bits (RS256, use sig),
// each with a kid unique in the set and across every integration; a key's
// x5c, when given, must be a trusted chain whose leaf holds the key and the
// integration's organisation number. A refused set changes nothing (400
// invalid_request, saying what to fix). A new key is accepted in grants
// key_activation_delay after it was first registered and until
// registered_key_lifetime after that (then MP-121); the answer gives each
// key's end as exp, in Unix seconds, and the set's created and last_updated.
// A key posted again (the same kid and key) keeps its registration.
//
// The simulator is not Maskinporten and proves nothing about access to
// real APIs; its tokens are signed with a key of its own.
package mpsim
