package syntax

import (
	"fmt"
	"strings"
)

// CheckScope checks the syntax Maskinporten scopes have: a prefix, a colon
// and a name, printable ASCII without spaces or quotes.
func CheckScope(scope string) error {
	i := strings.IndexByte(scope, ':')
	if i <= 0 || i == len(scope)-1 {
		return fmt.Errorf("scope %q: a Maskinporten scope is prefix:name, such as svv:kjoretoy/ecoc", scope)
	}
	for _, c := range scope {
		if c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return fmt.Errorf("scope %q: character %q is not allowed in a scope", scope, c)
		}
	}
	return nil
}
