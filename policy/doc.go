// Package policy decides which internal client may ask Portvakt for which
// Maskinporten scopes, in which environment and on whose behalf.
//
// The policy is a YAML file:
//
//	clients:
//	  - name: billing                  # unique, [a-z0-9-]+
//	    identities:                    # who the client is; an identity belongs to one client
//	      - spiffe://portvakt.test/ns/billing/sa/api   # an mTLS client's URI SAN
//	      - dns:billing.internal                       # an mTLS client's DNS SAN
//	      - cn:billing-service                         # an mTLS client's subject CN
//	      - uid:1000                                   # a Unix-socket peer's uid
//	      - gid:2000                                   # a Unix-socket peer's primary gid
//	    rules:
//	      - environments: [prod]
//	        scopes: [svv:kjoretoy/ecoc]
//	        system_users: ["313427137"]   # Altinn system users' customers
//	      - environments: [test, prod]
//	        scopes: [svv:kjoretoy/ecoc]
//	      - environments: [test]
//	        scopes: [svv:kjoretoy/ecoc.delegert]
//	        consumer_orgs: ["974760673"]   # as a supplier, for these consumers
//	      - environments: [test]
//	        scopes: [svv:kjoretoy/leasingtaker.delegert]   # on its own behalf
//	    rate_limit: {per_second: 5, burst: 10}     # optional token bucket
//	unknown_callers:                   # optional: every caller no client claims
//	  rate_limit: {per_second: 1, burst: 10}       # one bucket they share; this is the default
//
// Everything not allowed is denied. A request is allowed when a client
// claims one of the caller's identities (tried in the caller's order) and
// every scope asked for is allowed by one of that client's rules in the
// request's environment. A rule with consumer_orgs allows only requests on
// behalf of one of those organisations (consumer_org set), and only for
// delegated (.delegert) scopes: a supplier acting for a consumer. A rule
// without consumer_orgs allows only requests on the client's own behalf
// (no consumer_org), for any scope, .delegert ones included: a consumer may
// use both scopes of an API itself. So a client that both acts for
// consumers and uses a .delegert scope itself needs two rules; a rule with
// consumer_orgs never allows own-behalf use. Scopes and identities match
// exactly; DNS names are compared in lower case, as DNS compares them.
//
// A rule with system_users allows only requests for the Altinn system user
// of one of those customers (Request.SystemUserOrg set), for its scopes as
// listed; a rule without system_users never allows such a request. A rule
// has consumer_orgs or system_users, not both, and a request names a
// consumer_org or a system user, not both: Maskinporten takes no grant
// with both. Each customer is a valid organisation number, listed once.
//
// Every call is rate limited before anything else is done for it (Admit):
// a client's calls by its rate_limit, if it has one, and the calls of all
// callers no client claims by the one bucket they share, so that such
// callers, who are only ever denied, cannot make the daemon or its audit
// log work without bound.
//
// Load and Parse check the whole file and report every problem at once,
// each as FILE:LINE: what is wrong and what to do. Store keeps the policy in
// force, replaces it only with a valid one, and follows the file.
package policy
