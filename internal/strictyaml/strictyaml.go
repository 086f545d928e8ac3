// Package strictyaml decodes configuration files the one way Portvakt
// accepts them: one YAML document, every key known. A misspelt key that
// was silently ignored would leave a setting other than its author
// believes, so it is an error naming its line.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// Decode decodes data into v; name (the file) starts every message.
func Decode(name string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s is empty", name)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s holds more than one YAML document; put everything in one", name)
	}
	return nil
}
