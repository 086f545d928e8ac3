package duration

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"30s", 30 * time.Second},
		{"1.5h", 90 * time.Minute},
		{"2h45m", 2*time.Hour + 45*time.Minute},
		{"300ms", 300 * time.Millisecond},
		{"30d", 30 * Day},
		{"7d", 7 * Day},
		{"1d12h", 36 * time.Hour},
		{"12h1d", 36 * time.Hour},
		{"0.5d", 12 * time.Hour},
		{"2w", 14 * Day},
		{"1w2d3h", 9*Day + 3*time.Hour},
		{"-5m", -5 * time.Minute},
		{"-1d", -Day},
		{"+1d", Day},
		{"106751d", 106751 * Day},
	} {
		got, err := Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, in := range []string{"", "-", "d", "30", "30 d", "30days", "1y", "45 sekunder", "1..5d", "1d-2h", "107000d", "99999999999w", "1e3s", "0x10s"} {
		d, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, d)
			continue
		}
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), Example) {
			t.Errorf("Parse(%q) error %q: want ErrSyntax and the example %q", in, err, Example)
		}
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * Day: "30d", 14 * Day: "2w", 36 * time.Hour: "36h0m0s", 5 * time.Second: "5s", 0: "0s"} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
	}
}

// FuzzParse: Parse never panics; it agrees with time.ParseDuration on
// Go's syntax; and what Format writes reads back as the same duration.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "30s", "1d12h", "-2w", "1.5d", "9223372036854775807ns", "106751d23h47m16s", "µs", "1µs", ".5d", "5.d", "-9223372036854775808ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if !strings.ContainsAny(s, "dw") {
			want, goErr := time.ParseDuration(s)
			if (goErr == nil) != (err == nil) || goErr == nil && want != d {
				t.Fatalf("Parse(%q) = %v, %v; time.ParseDuration = %v, %v", s, d, err, want, goErr)
			}
		}
		if err != nil {
			return
		}
		back, err := Parse(Format(d))
		if err != nil || back != d {
			t.Fatalf("Parse(Format(%v)) = %v, %v", d, back, err)
		}
	})
}
