package secret

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// UnmarshalYAML implements yaml.Unmarshaler. A source is a mapping with the
// key file or env; anything else is refused with a message that never
// carries the value, because a scalar in its place is most likely the
// secret itself, written into the configuration by mistake. Unknown and
// repeated keys are refused too, as the strict decoder does elsewhere.
func (s *Source) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: give the PIN as {file: PATH} or {env: VARIABLE}; a PIN is never written in the configuration", node.Line)
	}
	var src Source
	seen := map[string]bool{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		key, value := node.Content[i], node.Content[i+1]
		if value.Kind == yaml.AliasNode && value.Alias != nil {
			value = value.Alias
		}
		var field *string
		switch key.Value {
		case "file":
			field = &src.File
		case "env":
			field = &src.Env
		default:
			// The key is not repeated: in {1234} or {1234: x} it is the PIN.
			return fmt.Errorf("line %d: unknown key: give the PIN as {file: PATH} or {env: VARIABLE}", key.Line)
		}
		if seen[key.Value] {
			return fmt.Errorf("line %d: key %q is given twice", key.Line, key.Value)
		}
		seen[key.Value] = true
		if value.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s must be a single string", value.Line, key.Value)
		}
		if value.ShortTag() != "!!null" {
			*field = value.Value
		}
	}
	*s = src
	return nil
}
