package maskinporten

// codes are the MP codes Maskinporten documents for a refused token
// request (docs/maskinporten.md, "Errors").
var codes = []string{
	"MP-011", // invalid parameter value
	"MP-012", // grant used before (jti reused)
	"MP-100", // client authentication failed, client not found
	"MP-110", // invalid aud
	"MP-120", // certificate not valid here
	"MP-121", // expired key or certificate
	"MP-122", // certificate's organisation number is not the client's
	"MP-123", // invalid x5c
	"MP-124", // invalid signature
	"MP-130", // JWT expired, or clock problem
	"MP-200", // scope not granted to the client
	"MP-201", // scope not allowed for Maskinporten
	"MP-250", // the consumer has not itself been granted the scope
	"MP-251", // the consumer has not delegated the scope to this supplier
	"MP-301", // authorization_details of an unknown type
	"MP-302", // authorization_details with unknown fields
	"MP-303", // authorization_details values invalid, or no system user matches
}

// Codes are the MP codes Maskinporten documents for a refused token
// request, in order: the label values a count of refusals by code has
// from the start. A refusal may carry another (Error.MPCode is what it
// said).
func Codes() []string { return append([]string(nil), codes...) }
