// Package selfservice is a client of Digdir's self-service API for the
// part of it that holds an integration's registered keys:
// GET /clients/{client_id}/jwks reads the set, POST replaces it whole.
// The API is authorised by a Maskinporten token for the self-service
// scopes (ScopeRead, ScopeModify) whose grant the integration's owner
// signed with its enterprise certificate; the client is given a function
// that gets one (in the daemon: the same grant builder, HSM signature,
// cache and audit as every other token), and never sees the key.
//
// A set is at most MaxKeys keys, each kid unique: Replace refuses a set
// that breaks either before sending it. A kid must also be unique across
// every integration at Maskinporten; Thumbprint (RFC 7638) gives one that
// is.
//
// Errors say what to do. ErrUnavailable (a network failure, a timeout,
// an answer 5xx) means the set was not read or changed, or may have been
// changed without the answer arriving: try again later and read the set
// before deciding anything. A *RefusedError (4xx) is the API's refusal,
// with its status and description.
package selfservice
