package strictyaml

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portvakt/portvakt/internal/duration"
)

// Lines maps the path of each value given in a file, as messages name it
// (listen.tcp.address, environments[0].client_id), to its line.
type Lines map[string]int

// Of returns the line of path, or, when it was not given, of the nearest
// value around it that was: a missing environments[1].client_id is
// reported at environments[1]. 0 when nothing around it was given.
func (ls Lines) Of(path string) int {
	for {
		if line, ok := ls[path]; ok {
			return line
		}
		if path == "" {
			return 0
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			path = ""
		} else {
			path = path[:i]
		}
	}
}

// Walk walks root (from Document) against v, a pointer to a struct whose
// fields carry yaml tags, and fills v in. Everything wrong is added to l,
// in words a reader of the file knows: an unknown key with the known key
// it is closest to, a value of the wrong shape with what is expected
// (never a Go type), a duration that does not read. Values of strings are
// never quoted, so that a secret written in the wrong place does not reach
// the message. A field's `expect` tag, when set, says in words what the
// field takes, such as "a list of environments, such as ...".
//
// Durations (time.Duration) are read by internal/duration; types with
// their own UnmarshalYAML (secret.Source) read themselves, and their
// messages are taken to be as careful.
func (l *List) Walk(root *yaml.Node, v any) Lines {
	rv := reflect.ValueOf(v).Elem()
	w := &walker{l: l, lines: Lines{}, places: map[string][]string{}}
	w.index(rv.Type(), "", map[reflect.Type]bool{})
	w.lines[""] = root.Line
	w.value(root, "", rv, "")
	return w.lines
}

type walker struct {
	l     *List
	lines Lines
	// places maps each key to where in the file it may be given
	// (hsm, hsms[]), for a key given in the wrong place.
	places map[string][]string
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

func (w *walker) index(t reflect.Type, at string, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Slice:
		w.index(t.Elem(), at+"[]", seen)
	case t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType) && !seen[t]:
		seen[t] = true
		defer delete(seen, t)
		place := at
		if place == "" {
			place = "the top level"
		}
		for _, f := range fields(t) {
			w.places[f.key] = append(w.places[f.key], place)
			w.index(f.typ.Type, join(at, f.key), seen)
		}
	}
}

type field struct {
	key string
	typ reflect.StructField
}

// fields lists a struct's keys in their order.
func fields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" || key == "-" {
			continue
		}
		fs = append(fs, field{key: key, typ: f})
	}
	return fs
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// named is how a message names the value at path.
func named(path string) string {
	if path == "" {
		return "the file"
	}
	return path
}

func (w *walker) value(n *yaml.Node, path string, v reflect.Value, expect string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	t := v.Type()
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		w.unmarshaler(n, path, v)
		return
	}
	if expect == "" {
		expect = words(t)
	}
	isNull := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	switch {
	case isNull:
		v.SetZero() // as YAML has it: an empty value is the default
	case t == durationType:
		w.duration(n, path, v, expect)
	case t.Kind() == reflect.Pointer:
		p := reflect.New(t.Elem())
		w.value(n, path, p.Elem(), expect)
		v.Set(p)
	case t.Kind() == reflect.Struct:
		w.mapping(n, path, v, expect)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.l.Addf(n.Line, "%s: expected %s, got %s", named(path), expect, describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			at := fmt.Sprintf("%s[%d]", path, i)
			w.lines[at] = item.Line
			w.value(item, at, s.Index(i), "")
		}
		v.Set(s)
	default:
		w.scalar(n, path, v, expect)
	}
}

func (w *walker) mapping(n *yaml.Node, path string, v reflect.Value, expect string) {
	if n.Kind != yaml.MappingNode {
		w.l.Addf(n.Line, "%s: expected %s, got %s%s", named(path), expect, describe(n), mappingHint(n))
		return
	}
	fs := fields(v.Type())
	known := make([]string, len(fs))
	for i, f := range fs {
		known[i] = f.key
	}
	given := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			w.l.Addf(k.Line, "%s: a key must be a plain word, not %s; the keys here are %s", named(path), describe(k), strings.Join(known, ", "))
			continue
		case k.ShortTag() == "!!merge":
			w.l.Addf(k.Line, "%s: YAML merge keys (<<) are not supported; write the keys out", named(path))
			continue
		}
		at := join(path, k.Value)
		j := slices.Index(known, k.Value)
		if j < 0 {
			w.l.Addf(k.Line, "%s: unknown key; %s", at, w.unknown(k.Value, path, known))
			continue
		}
		if first, dup := given[k.Value]; dup {
			w.l.Addf(k.Line, "%s: given twice (first at line %d); give it once", at, first)
			continue
		}
		given[k.Value] = k.Line
		w.lines[at] = k.Line
		f := fs[j]
		w.value(val, at, v.FieldByIndex(f.typ.Index), f.typ.Tag.Get("expect"))
	}
}

// unknown says what to do about an unknown key: the known key it is a
// typo of, or where it belongs when it is known elsewhere.
func (w *walker) unknown(key, path string, known []string) string {
	here := "the keys here are " + strings.Join(known, ", ")
	if path != "" {
		here = "the keys of " + path + " are " + strings.Join(known, ", ")
	}
	if s := Suggest(key, known); s != "" {
		return fmt.Sprintf("did you mean %s? (%s)", s, here)
	}
	if places := w.places[strings.ToLower(key)]; len(places) > 0 {
		return fmt.Sprintf("%s goes in %s: move it there (%s)", strings.ToLower(key), strings.Join(places, " or "), here)
	}
	all := make([]string, 0, len(w.places))
	for k := range w.places {
		all = append(all, k)
	}
	slices.Sort(all)
	if s := Suggest(key, all); s != "" {
		return fmt.Sprintf("did you mean %s, which goes in %s? (%s)", s, strings.Join(w.places[s], " or "), here)
	}
	return "remove it or correct it (" + here + ")"
}

func (w *walker) duration(n *yaml.Node, path string, v reflect.Value, expect string) {
	if n.Kind != yaml.ScalarNode {
		w.l.Addf(n.Line, "%s: expected %s, got %s", named(path), expect, describe(n))
		return
	}
	d, err := duration.Parse(n.Value)
	if err != nil {
		w.l.Addf(n.Line, "%s: %w", named(path), err)
		return
	}
	v.SetInt(int64(d))
}

func (w *walker) scalar(n *yaml.Node, path string, v reflect.Value, expect string) {
	if n.Kind != yaml.ScalarNode {
		w.l.Addf(n.Line, "%s: expected %s, got %s%s", named(path), expect, describe(n), mappingHint(n))
		return
	}
	k := v.Kind()
	isInt := isUint(k) || k >= reflect.Int && k <= reflect.Int64
	// The YAML package would cut 1.5 to 1 in a whole-number field.
	if !isInt || n.ShortTag() == "!!int" {
		if err := n.Decode(v.Addr().Interface()); err == nil {
			return
		}
	}
	switch {
	case n.ShortTag() == "!!int" && isUint(k) && strings.HasPrefix(n.Value, "-"):
		w.l.Addf(n.Line, "%s: must not be negative; give %s", named(path), expect)
	case n.ShortTag() == "!!int" || n.ShortTag() == "!!float" && strings.Trim(n.Value, "0123456789") == "":
		w.l.Addf(n.Line, "%s: the number is too large; give %s", named(path), expect)
	default:
		w.l.Addf(n.Line, "%s: expected %s, got %s", named(path), expect, describe(n))
	}
}

// lineOf picks the line out of the messages of the YAML package and of
// UnmarshalYAML methods, which carry it only in their text.
var lineOf = regexp.MustCompile(`(?m)^\s*(?:yaml: )?line (\d+): (.*)$`)

// unmarshaler lets a type read itself, and records the lines of the keys
// of its mapping for later messages (hsm.pin.file).
func (w *walker) unmarshaler(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.lines[join(path, n.Content[i].Value)] = n.Content[i].Line
		}
	}
	err := n.Decode(v.Addr().Interface())
	if err == nil {
		return
	}
	line, msg := n.Line, err.Error()
	if m := lineOf.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	w.l.Addf(line, "%s: %s", named(path), msg)
}

func isUint(k reflect.Kind) bool {
	return k >= reflect.Uint && k <= reflect.Uintptr
}

// words says in words what a type takes, for "expected ...".
func words(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as " + duration.Example
	case t.Kind() == reflect.Pointer:
		return words(t.Elem())
	case t.Kind() == reflect.Struct:
		var keys []string
		for _, f := range fields(t) {
			keys = append(keys, f.key)
		}
		return "a mapping with the keys " + strings.Join(keys, ", ")
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case isUint(t.Kind()):
		return "a whole number (0 or more)"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	}
	return "a single value"
}

// describe names what a node is, without its value.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!str":
			return "a string"
		case "!!int":
			return "a whole number"
		case "!!float":
			return "a decimal number"
		case "!!bool":
			return "a true/false value"
		}
		return "a value tagged " + n.Tag
	}
	return "a document"
}

// mappingHint explains the usual way a value turns into a mapping by
// mistake: a space after a colon inside it. Neither side is repeated: the
// value may be a secret.
func mappingHint(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode || n.Content[1].Kind != yaml.ScalarNode {
		return ""
	}
	return " (a colon and a space inside a value make a key and a value to YAML; quote the value if the colon belongs in it)"
}
