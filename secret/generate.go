package secret

import (
	"crypto/rand"
	"fmt"
	"os"
)

// GeneratedLength is the length of a secret made by Generate: 20 characters of
// a 62-letter alphabet, about 119 bits.
const GeneratedLength = 20

// Generate makes a random secret (a PIN) and writes it to a new file readable only by
// its owner. It refuses to overwrite an existing file, so that a token's PIN
// is never lost by a second run.
func Generate(path string) (Value, error) {
	value := rand.Text()[:GeneratedLength]
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Value{}, fmt.Errorf("creating secret file: %w", err)
	}
	if _, err := f.WriteString(value + "\n"); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return Value{}, fmt.Errorf("writing secret file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return Value{}, fmt.Errorf("writing secret file %s: %w", path, err)
	}
	return wrap(value), nil
}
