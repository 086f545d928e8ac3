// Package syntax is how the names Portvakt matches are written: caller
// identities (uid:N, gid:N, dns:NAME, cn:NAME, a URI), Maskinporten
// scopes and Altinn system users' external references. It is a leaf: identity spells a caller with it, policy checks its
// file with it, and the token service checks requests with it, so that
// each of them agrees on one spelling without importing the others.
package syntax
