// Package devca is a throwaway certificate authority for DEVELOPMENT, DEMOS
// AND TESTS ONLY.
//
// NEVER USE IT IN PRODUCTION. Its keys live in ordinary files on disk, it
// keeps no issuance records, publishes no revocation information and checks
// nothing about who asks for a certificate. Certificates it issues prove
// nothing about any real enterprise, and Maskinporten will not accept them.
// A production Portvakt must use an eSeal (virksomhetssertifikat) from a
// qualified issuer such as Buypass or Commfides.
//
// The package imitates the shape of what those issuers hand out, so the rest
// of Portvakt can be exercised end to end without one: a self-signed root
// CA, an intermediate ("issuing") CA signed by the root, and end-entity
// eSeal certificates signed by the intermediate that carry the organisation
// number the way real ones do (organizationIdentifier "NTRNO-<orgno>", or
// serialNumber on older certificates).
package devca
