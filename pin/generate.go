package pin

import (
	"crypto/rand"
	"fmt"
	"os"
)

// GeneratedLength is the length of a PIN made by Generate: 20 characters of
// a 62-letter alphabet, about 119 bits.
const GeneratedLength = 20

// Generate makes a random PIN and writes it to a new file readable only by
// its owner. It refuses to overwrite an existing file, so that a token's PIN
// is never lost by a second run.
func Generate(path string) (PIN, error) {
	value := rand.Text()[:GeneratedLength]
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return PIN{}, fmt.Errorf("creating PIN file: %w", err)
	}
	if _, err := f.WriteString(value + "\n"); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return PIN{}, fmt.Errorf("writing PIN file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return PIN{}, fmt.Errorf("writing PIN file %s: %w", path, err)
	}
	return PIN{value: value}, nil
}
