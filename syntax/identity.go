package syntax

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The prefixes of the identities that are not URIs. A URI SAN with one of
// them as its scheme could pose as such an identity (a certificate with the
// URI SAN uid:0 would be taken for root's Unix peer), so URIIdentity
// refuses them and the policy never treats them as URIs.
const (
	prefixDNS = "dns:"
	prefixCN  = "cn:"
	prefixUID = "uid:"
	prefixGID = "gid:"
)

// MaxIdentityBytes bounds an identity, in the policy and of a caller (the
// daemon refuses a caller with a longer one): every audit record of a call
// names the caller's identities, and records are kept small. A URI, DNS
// name or common name in a client certificate is far shorter.
const MaxIdentityBytes = 256

// IdentityForms is said whenever an identity is not understood.
const IdentityForms = "write a URI with a scheme and a host (spiffe://…, https://…), or dns:NAME, cn:NAME, uid:NUMBER or gid:NUMBER"

// UnixPeerIdentities returns a Unix-socket peer's identities (from
// SO_PEERCRED) in the order Decide must try them: the uid first, because it
// names one account while a primary gid may be shared by many.
func UnixPeerIdentities(uid, gid uint32) []string {
	return []string{prefixUID + strconv.FormatUint(uint64(uid), 10), prefixGID + strconv.FormatUint(uint64(gid), 10)}
}

// DNSIdentity returns the identity of an mTLS client certificate's DNS SAN.
func DNSIdentity(name string) string { return prefixDNS + lowerASCII(name) }

// CNIdentity returns the identity of an mTLS client certificate's subject
// common name.
func CNIdentity(commonName string) string { return prefixCN + commonName }

// URIIdentity returns the identity of an mTLS client certificate's URI SAN,
// or false when the URI must not identify anyone: one without a scheme and
// a host, or one whose scheme is dns, cn, uid or gid and so could pose as
// another kind of identity. The daemon should build a certificate's
// identity with this rather than passing the URI through.
func URIIdentity(u *url.URL) (string, bool) {
	if u == nil {
		return "", false
	}
	s := u.String()
	if checkURIIdentity(s) != nil {
		return "", false
	}
	return s, true
}

// CanonicalIdentity is the form identities are compared in: DNS names in
// lower case, everything else as it is.
func CanonicalIdentity(id string) string {
	if name, ok := strings.CutPrefix(id, prefixDNS); ok {
		return prefixDNS + lowerASCII(name)
	}
	return id
}

// lowerASCII folds A-Z only. strings.ToLower would also fold characters
// such as the Kelvin sign (U+212A) into k, letting a name that is not the
// policy's match it.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// CheckIdentity says what is wrong with an identity in the policy.
func CheckIdentity(id string) error {
	if len(id) > MaxIdentityBytes {
		return fmt.Errorf("%d bytes long; an identity has at most %d", len(id), MaxIdentityBytes)
	}
	switch {
	case strings.HasPrefix(id, prefixUID), strings.HasPrefix(id, prefixGID):
		return checkNumericID(id[:3], id[4:])
	case strings.HasPrefix(id, prefixDNS):
		return checkDNSName(id[len(prefixDNS):])
	case strings.HasPrefix(id, prefixCN):
		return checkCommonName(id[len(prefixCN):])
	}
	return checkURIIdentity(id)
}

func checkNumericID(kind, n string) error {
	v, err := strconv.ParseUint(n, 10, 32)
	// A leading zero or a sign would never match what the daemon passes,
	// which is the plain decimal number.
	if err != nil || strconv.FormatUint(v, 10) != n {
		return fmt.Errorf("%s: must be followed by a decimal number of at most 32 bits without leading zeros, such as %s:1000", kind, kind)
	}
	return nil
}

func checkDNSName(name string) error {
	if name == "" {
		return errors.New("dns: must be followed by a DNS name, such as dns:billing.internal")
	}
	if strings.Contains(name, "*") {
		return errors.New("a wildcard is not an identity: name the client's own DNS SAN")
	}
	if lowerASCII(name) != name {
		return fmt.Errorf("write the DNS name in lower case (dns:%s): DNS names are compared case-insensitively", lowerASCII(name))
	}
	if len(name) > 253 {
		return errors.New("a DNS name is at most 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a DNS name: labels of 1 to 63 letters, digits and inner hyphens, separated by single dots, no final dot", name)
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a DNS name: character %q is not allowed (letters, digits, hyphens and dots)", name, c)
			}
		}
	}
	return nil
}

func checkCommonName(cn string) error {
	if cn == "" {
		return errors.New("cn: must be followed by the certificate's subject common name, such as cn:billing-service")
	}
	if !utf8.ValidString(cn) {
		return errors.New("the common name is not valid UTF-8")
	}
	if strings.TrimSpace(cn) != cn {
		return errors.New("the common name starts or ends with white space; it is compared exactly, so remove it")
	}
	for _, r := range cn {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("the common name holds the unprintable character %q", r)
		}
	}
	return nil
}

func checkURIIdentity(id string) error {
	scheme, rest, ok := strings.Cut(id, "://")
	if !ok || scheme == "" {
		return errors.New(IdentityForms)
	}
	switch lowerASCII(scheme) {
	case "dns", "cn", "uid", "gid":
		return fmt.Errorf("%s identities are written %s:VALUE, without //", scheme, lowerASCII(scheme))
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f || !unicode.IsPrint(r) {
			return fmt.Errorf("the URI holds %q: percent-encode it as the certificate does", r)
		}
	}
	u, err := url.Parse(id)
	if err != nil {
		return fmt.Errorf("not a URI: %w", err)
	}
	if u.Host == "" || rest == "" {
		return fmt.Errorf("the URI has no host after %s://; %s", scheme, IdentityForms)
	}
	// The daemon compares the certificate's URI as Go prints it; a policy
	// entry written differently (an upper-case scheme, other escaping)
	// would silently never match.
	if s := u.String(); s != id {
		return fmt.Errorf("write the URI as %s: that is how it is compared", s)
	}
	return nil
}
