package orgno

import "testing"

// FuzzParse checks the properties callers rely on: Parse never panics, and
// whatever it accepts is exactly nine ASCII digits that round-trip through
// String and agree with Valid.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"974760673", "971526920", "991825827", "974760674", "974760690", "", "97476067", "٩٧٤٧٦٠٦٧٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if Valid(s) != (err == nil) {
			t.Fatalf("Valid(%q) = %v but Parse error = %v", s, Valid(s), err)
		}
		if err != nil {
			if n != "" {
				t.Fatalf("Parse(%q) returned %q with error %v", s, n, err)
			}
			return
		}
		if len(s) != Length {
			t.Fatalf("Parse(%q) accepted %d bytes", s, len(s))
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				t.Fatalf("Parse(%q) accepted non-digit byte %q at %d", s, s[i], i)
			}
		}
		if n.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, n.String())
		}
	})
}
