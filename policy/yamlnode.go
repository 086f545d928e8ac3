package policy

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/portvakt/portvakt/internal/strictyaml"
)

// The policy is read through yaml.Node rather than decoded into structs:
// nodes carry the line of every value, which every message needs, and
// walking them lets one pass report all problems instead of stopping at the
// first, as strict struct decoding would.

// field is one key: value pair of a mapping.
type field struct{ key, value *yaml.Node }

// mapping returns the pairs of a mapping, reporting keys other than known,
// keys given twice, and anything that is not a mapping.
func (ps *problems) mapping(n *yaml.Node, what string, known ...string) (map[string]field, bool) {
	if !ps.plain(n) {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		ps.addf(n.Line, "%s must be a mapping of keys (%s) to values, not %s", what, strings.Join(known, ", "), describe(n))
		return nil, false
	}
	fields := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !ps.plain(k) {
			continue
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			ps.addf(k.Line, "a key in %s must be a plain word (%s), not %s", what, strings.Join(known, ", "), describe(k))
		case k.ShortTag() == "!!merge":
			ps.addf(k.Line, "YAML merge keys (<<) are not supported in the policy: write the keys out, so each entry can be read where it stands")
		case !slices.Contains(known, k.Value):
			msg := fmt.Sprintf("unknown key %q in %s", k.Value, what)
			if s := strictyaml.Suggest(k.Value, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			ps.addf(k.Line, "%s; the keys are %s", msg, strings.Join(known, ", "))
		default:
			if prev, dup := fields[k.Value]; dup {
				ps.addf(k.Line, "key %q appears twice in %s (first at line %d): give it once", k.Value, what, prev.key.Line)
				continue
			}
			fields[k.Value] = field{key: k, value: v}
		}
	}
	return fields, true
}

// plain reports (and refuses) aliases. Following them would let a short
// file expand into a huge one, and a policy is reviewed line by line: what
// a client may do should be written where the client is.
func (ps *problems) plain(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		ps.addf(n.Line, "YAML aliases (*%s) are not supported in the policy: write the value out", n.Value)
		return false
	}
	return true
}

// scalar returns a single value: a string, or a number or word YAML would
// type otherwise, taken as written (so an organisation number or uid need
// not be quoted). Empty values are reported as such.
func (ps *problems) scalar(n *yaml.Node, what string) (string, bool) {
	if !ps.plain(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		ps.addf(n.Line, "%s must be a single value, not %s%s", what, describe(n), mappingHint(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool":
	case "!!null":
		ps.addf(n.Line, "%s is empty", what)
		return "", false
	default:
		ps.addf(n.Line, "%s has the YAML tag %s: write a plain value", what, n.Tag)
		return "", false
	}
	return n.Value, true
}

// list returns the items of a non-empty sequence. A single value where a
// list belongs is refused rather than taken as a list of one, to keep one
// way of writing each thing.
func (ps *problems) list(f field, what, example string) ([]*yaml.Node, bool) {
	n := f.value
	if !ps.plain(n) {
		return nil, false
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		ps.addf(f.key.Line, "%s is empty: list them, such as %s", what, example)
		return nil, false
	case n.Kind != yaml.SequenceNode:
		ps.addf(n.Line, "%s must be a list, such as %s, not %s", what, example, describe(n))
		return nil, false
	case len(n.Content) == 0:
		ps.addf(n.Line, "%s is empty: list them, such as %s", what, example)
		return nil, false
	}
	return n.Content, true
}

// describe names a node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			return fmt.Sprintf("the quoted text %q", n.Value)
		}
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// mappingHint explains the usual way a value turns into a mapping by
// mistake: a space after the colon, as in "- uid: 1000".
func mappingHint(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode || n.Content[1].Kind != yaml.ScalarNode {
		return ""
	}
	k, v := n.Content[0].Value, n.Content[1].Value
	return fmt.Sprintf(` ("%s: %s" is a key and a value to YAML; write %s:%s without the space)`, k, v, k, v)
}
