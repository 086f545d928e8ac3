package orgno

import (
	"errors"
	"strings"
	"testing"
)

// The valid numbers below had their check digits recomputed with the
// weights 3 2 7 6 5 4 3 2 rather than copied from a register:
//
//	974760673: sum 173, 173 % 11 = 8, check 11-8 = 3 (Brønnøysundregistrene)
//	971526920: sum 143, 143 % 11 = 0, check 0        (remainder-zero case)
//	991825827: sum 158, 158 % 11 = 4, check 11-4 = 7 (Digdir)
//	971032081: sum  87,  87 % 11 = 10, check 11-10 = 1
//	974760690: sum for 97476069 is 166, 166 % 11 = 1, so no check digit exists.
func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; empty means valid
	}{
		{name: "Brønnøysundregistrene", in: "974760673"},
		{name: "remainder zero gives check digit 0", in: "971526920"},
		{name: "Digdir", in: "991825827"},
		{name: "remainder ten gives check digit 1", in: "971032081"},

		{name: "empty", in: "", wantErr: "has 0 characters, want exactly 9"},
		{name: "eight digits", in: "97476067", wantErr: "has 8 characters"},
		{name: "ten digits", in: "9747606730", wantErr: "has 10 characters"},
		{name: "grouped with spaces", in: "974 760 673", wantErr: "has 11 characters"},
		{name: "leading space", in: " 97476067", wantErr: "character 1 (\" \") is not an ASCII digit"},
		{name: "sign", in: "+97476067", wantErr: "character 1 (\"+\") is not an ASCII digit"},
		{name: "letter in the middle", in: "9747a0673", wantErr: "character 5 (\"a\") is not an ASCII digit"},
		{name: "letter as check digit", in: "97476067X", wantErr: "character 9 (\"X\") is not an ASCII digit"},
		// Nine characters but more than nine bytes: the message must name
		// the offending character as the user sees it.
		{name: "Arabic-Indic digits", in: "٩٧٤٧٦٠٦٧٣", wantErr: "character 1 (\"٩\") is not an ASCII digit"},
		{name: "fullwidth digit", in: "97476067３", wantErr: "character 9 (\"３\") is not an ASCII digit"},
		{name: "ten characters with a multi-byte one", in: "97476067３3", wantErr: "has 10 characters"},
		// A lone non-UTF-8 byte that keeps the length at nine bytes.
		{name: "Latin-1 byte", in: "97476067\xb3", wantErr: "character 9 (\"\\xb3\") is not an ASCII digit"},

		{name: "wrong check digit", in: "974760674", wantErr: "check digit is 4, want 3"},
		{name: "transposed digits", in: "979460673", wantErr: "want "},
		{name: "remainder one", in: "974760690", wantErr: "no valid check digit exists for the first eight digits 97476069"},
		{name: "remainder one, other check digit", in: "974760699", wantErr: "no valid check digit exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse(%q) error = %v, want nil", tt.in, err)
				}
				if got.String() != tt.in {
					t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.in)
				}
				if !Valid(tt.in) {
					t.Errorf("Valid(%q) = false, want true", tt.in)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q) = %q, nil; want error containing %q", tt.in, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) error does not wrap ErrInvalid: %v", tt.in, err)
			}
			if got != "" {
				t.Errorf("Parse(%q) returned %q alongside an error, want empty", tt.in, got)
			}
			if Valid(tt.in) {
				t.Errorf("Valid(%q) = true, want false", tt.in)
			}
		})
	}
}

// TestCheckDigitExhaustiveLastDigit checks, for a spread of eight-digit
// prefixes, that exactly one final digit is accepted unless the remainder is
// 1, in which case none is. This guards the switch in checkDigit against
// off-by-one mistakes that a handful of fixed examples could miss.
func TestCheckDigitExhaustiveLastDigit(t *testing.T) {
	prefixes := []string{"00000000", "97476067", "97476069", "97152692", "99182582", "12345678", "99999999", "10000013"}
	for _, p := range prefixes {
		accepted := 0
		for d := byte('0'); d <= '9'; d++ {
			if Valid(p + string(d)) {
				accepted++
			}
		}
		_, ok := checkDigit(p)
		want := 1
		if !ok {
			want = 0
		}
		if accepted != want {
			t.Errorf("prefix %s: %d final digits accepted, want %d", p, accepted, want)
		}
	}
}
