package main

import (
	"encoding/json"
	"io"
)

// writeJSON prints v as the one JSON document a --json command writes on
// standard output. The field names are part of the interface: docs/cli.md
// lists them, and they change only in a way old readers can ignore.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
