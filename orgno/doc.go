// Package orgno parses and validates Norwegian organisation numbers
// (organisasjonsnummer) as issued by Brønnøysundregistrene, and extracts them
// from enterprise certificates (virksomhetssertifikat / eSeal).
//
// An organisation number is nine digits; the ninth is a modulus-11 check
// digit over the first eight. Validating it catches typos in configuration
// before a Maskinporten grant is signed for the wrong enterprise.
package orgno
