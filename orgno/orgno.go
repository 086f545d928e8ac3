package orgno

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Length is the number of digits in an organisation number.
const Length = 9

// weights are the modulus-11 weights for the first eight digits, as defined
// by Brønnøysundregistrene.
var weights = [Length - 1]int{3, 2, 7, 6, 5, 4, 3, 2}

// ErrInvalid is wrapped by every error Parse returns, so callers can test
// for a bad organisation number with errors.Is without matching text.
var ErrInvalid = errors.New("invalid organisation number")

// Number is a validated nine-digit Norwegian organisation number. The only
// way to obtain a non-empty Number that is guaranteed valid is Parse (or
// FromName / FromCertificate, which call it); a conversion such as
// Number("123") bypasses validation and should be avoided.
type Number string

// String returns the nine digits without any grouping, the form used in
// certificates and in Maskinporten consumer_org claims.
func (n Number) String() string { return string(n) }

// Parse validates s as an organisation number. It accepts exactly nine ASCII
// digits: no spaces, grouping, sign or non-ASCII digits, because the number
// is compared byte-for-byte against certificate subjects and Maskinporten
// claims, and a lenient parser would hide mismatches there.
func Parse(s string) (Number, error) {
	// Count and report characters, not bytes, so the messages match what
	// the user typed even when it contains non-ASCII characters.
	if n := utf8.RuneCountInString(s); n != Length {
		return "", fmt.Errorf("%w %q: has %d characters, want exactly %d digits",
			ErrInvalid, s, n, Length)
	}
	for i, pos := 0, 1; i < len(s); pos++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		if size != 1 || s[i] < '0' || s[i] > '9' {
			// Quote the bytes as a string so an invalid UTF-8 byte shows
			// as \xNN rather than as some unrelated character.
			return "", fmt.Errorf("%w %q: character %d (%q) is not an ASCII digit 0-9",
				ErrInvalid, s, pos, s[i:i+size])
		}
		i += size
	}
	want, ok := checkDigit(s[:Length-1])
	if !ok {
		return "", fmt.Errorf("%w %q: no valid check digit exists for the first eight digits %s (modulus 11 remainder is 1); the number is mistyped",
			ErrInvalid, s, s[:Length-1])
	}
	if got := s[Length-1]; got != want {
		return "", fmt.Errorf("%w %q: check digit is %c, want %c for the first eight digits %s; the number is probably mistyped",
			ErrInvalid, s, got, want, s[:Length-1])
	}
	return Number(s), nil
}

// Valid reports whether s is a valid organisation number, for callers that
// do not need the reason it is not.
func Valid(s string) bool {
	_, err := Parse(s)
	return err == nil
}

// checkDigit computes the modulus-11 check digit over eight ASCII digits.
// It reports false when the remainder is 1, because the check digit would
// then be 10 and Brønnøysundregistrene never issues such numbers.
func checkDigit(first8 string) (byte, bool) {
	sum := 0
	for i, w := range weights {
		sum += int(first8[i]-'0') * w
	}
	switch r := sum % 11; r {
	case 0:
		return '0', true
	case 1:
		return 0, false
	default:
		return byte('0' + 11 - r), true
	}
}
