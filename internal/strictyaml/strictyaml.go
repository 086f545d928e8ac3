// Package strictyaml reads Portvakt's files the one way it accepts them:
// one YAML document, every key known. A misspelt key that was silently
// ignored would leave a setting other than its author believes, so it is
// an error naming its line.
//
// List collects every problem of a file as a Problem (FILE:LINE: what is
// wrong; what to do), so that one run reports them all. Document parses
// the file; Walk goes through it against a Go struct, reporting in words a
// reader of the file knows (no Go types, no values of strings) and
// recording each field's line for later checks (Lines). The policy walks its nodes itself
// and shares the List, the Problem and Suggest.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// Decode decodes data into v; name (the file) starts every message, and
// the rest is the YAML package's. It stops at the first problem: for files
// people edit, use Document and List.Walk, which report them all.
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
