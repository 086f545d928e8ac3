package syntax

import "fmt"

// MaxExternalRefBytes bounds an Altinn system user's external reference
// (externalRef): it is in the grant and in every audit record of the
// request. Altinn's references are short identifiers a supplier chooses.
const MaxExternalRefBytes = 128

// CheckExternalRef checks an Altinn system user's external reference:
// 1 to MaxExternalRefBytes bytes of printable ASCII (space to tilde: no
// control characters, no bytes above 0x7E), not beginning or ending with
// a space. The messages never repeat a reference that is too long, and
// quote the offending character rather than the reference.
func CheckExternalRef(ref string) error {
	switch {
	case ref == "":
		return fmt.Errorf("the external reference is empty; leave it out for none")
	case len(ref) > MaxExternalRefBytes:
		return fmt.Errorf("%d bytes long; an external reference has at most %d", len(ref), MaxExternalRefBytes)
	case ref[0] == ' ' || ref[len(ref)-1] == ' ':
		return fmt.Errorf("an external reference may not begin or end with a space")
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c < ' ' || c > '~' {
			return fmt.Errorf("byte %d is 0x%02x: an external reference is printable ASCII (0x20 to 0x7e)", i+1, c)
		}
	}
	return nil
}
