package strictyaml

import (
	"strings"
	"testing"
	"time"
)

// TestDocumentSyntaxLines: a syntax error is reported at the line where
// the broken block starts, whether the YAML package's parser or its
// scanner found it (they count lines differently), with what to do.
func TestDocumentSyntaxLines(t *testing.T) {
	for _, tt := range []struct {
		name, data string
		want       string
	}{
		{"unclosed flow sequence (parser)", "a: 1\nb: [1, 2\nc: 3\n", "f.yaml:2: not valid YAML: did not find expected ',' or ']'; check the indentation"},
		{"unclosed flow mapping on line 1 (parser)", "a: {b: 1\n", "f.yaml:1: not valid YAML"},
		{"unclosed quote (scanner)", "a: 1\nb: \"x\n", "f.yaml:2: not valid YAML"},
		{"tab", "a:\n\tb: 1\n", "f.yaml:2: not valid YAML: found character that cannot start any token; YAML indents with spaces: replace the tabs"},
		{"unknown anchor, not named", "a: *SECRETNAME\n", "an anchor referenced"},
		{"second document", "a: 1\n---\nb: 2\n", "f.yaml:2: a second YAML document"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := &List{File: "f.yaml"}
			if root := l.Document([]byte(tt.data)); root != nil {
				t.Fatalf("Document returned a root for %q", tt.data)
			}
			err := l.Err()
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "SECRETNAME") {
				t.Fatalf("Document(%q): %v\nwant %q", tt.data, err, tt.want)
			}
		})
	}
	if root := (&List{}).Document(nil); root != nil {
		t.Errorf("an empty file has a root")
	}
}

func TestLinesOf(t *testing.T) {
	ls := Lines{"": 1, "listen": 2, "listen.tcp": 4, "environments[1]": 9}
	for path, want := range map[string]int{
		"listen.tcp.address":        4,
		"listen.unix":               2,
		"environments[1].client_id": 9,
		"environments[0].client_id": 1,
		"policy":                    1,
	} {
		if got := ls.Of(path); got != want {
			t.Errorf("Of(%q) = %d, want %d", path, got, want)
		}
	}
	if got := (Lines(nil)).Of("x"); got != 0 {
		t.Errorf("nil Lines: %d", got)
	}
}

type inner struct {
	Wait time.Duration `yaml:"wait"`
	N    int           `yaml:"n"`
}

type outer struct {
	Name  string  `yaml:"name"`
	Items []inner `yaml:"items" expect:"a list of items, such as - {wait: 1s}"`
	One   *inner  `yaml:"one"`
}

// TestWalkEveryProblem: one walk reports each problem at its line and
// records the line of every value given.
func TestWalkEveryProblem(t *testing.T) {
	data := "name: x\nitems:\n  - wait: 2d\n  - {wiat: 1s, n: 1.5}\none: [1]\nnmae: y\nname: z\n"
	l := &List{File: "f.yaml"}
	var v outer
	lines := l.Walk(l.Document([]byte(data)), &v)
	want := []string{
		"f.yaml:4: items[1].wiat: unknown key; did you mean wait? (the keys of items[1] are wait, n)",
		"f.yaml:4: items[1].n: expected a whole number, got a decimal number",
		"f.yaml:5: one: expected a mapping with the keys wait, n, got a list",
		"f.yaml:6: nmae: unknown key; did you mean name? (the keys here are name, items, one)",
		"f.yaml:7: name: given twice (first at line 1); give it once",
	}
	if got := Problems(l.Err()); len(got) != len(want) {
		t.Fatalf("problems:\n%v\nwant:\n%s", l.Err(), strings.Join(want, "\n"))
	} else {
		for i := range want {
			if got[i].Error() != want[i] {
				t.Errorf("problem %d = %q\nwant %q", i, got[i], want[i])
			}
		}
	}
	if v.Items[0].Wait != 48*time.Hour || lines["items[0].wait"] != 3 || lines["items[1]"] != 4 {
		t.Errorf("decoded %+v, lines %v", v, lines)
	}
}
