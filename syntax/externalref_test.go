package syntax

import (
	"strings"
	"testing"
)

func TestCheckExternalRef(t *testing.T) {
	for _, ok := range []string{"313427137", "kjoretoy-prod-1", "a b", "x", strings.Repeat("r", MaxExternalRefBytes), "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"} {
		if err := CheckExternalRef(ok); err != nil {
			t.Errorf("CheckExternalRef(%q) = %v", ok, err)
		}
	}
	long := strings.Repeat("r", MaxExternalRefBytes+1)
	for ref, want := range map[string]string{
		"":                 "empty",
		long:               "129 bytes long; an external reference has at most 128",
		" ref":             "begin or end with a space",
		"ref ":             "begin or end with a space",
		"ref\nforged line": "byte 4 is 0x0a",
		"ref\x00":          "byte 4 is 0x00",
		"ref\x7f":          "byte 4 is 0x7f",
		"reff\xc3\xa6":     "byte 5 is 0xc3",
	} {
		err := CheckExternalRef(ref)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckExternalRef(%q) = %v, want %q", ref, err, want)
		}
		if err != nil && len(ref) > 8 && strings.Contains(err.Error(), ref) {
			t.Errorf("the message repeats the reference: %v", err)
		}
	}
}
