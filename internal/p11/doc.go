// Package p11 holds the few PKCS#11 operations that crypto11 does not offer
// (initialising a token, importing a private key, listing every certificate
// object, reading raw attributes) and the classification of PKCS#11 errors
// that tells a broken token from a refused request.
//
// It talks to the module through github.com/miekg/pkcs11, the library
// crypto11 itself is built on. A PKCS#11 module is initialised once per
// process; crypto11 keeps its own reference count and refuses to start when
// someone else has initialised the module. So this package only borrows a
// module: it finalises a module only if it was the one that initialised it.
package p11
