package strictyaml

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong in a file. Readers return every problem they
// find joined with errors.Join, so a caller can list them with Problems, or
// find one with errors.As.
type Problem struct {
	File string
	Line int // 1-based; 0 when the problem has no line
	Err  error
}

// Error prints the problem as FILE:LINE: message.
func (p *Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", p.File, p.Line, p.Err)
	}
	return fmt.Sprintf("%s: %v", p.File, p.Err)
}

// Unwrap returns the error the message is made of.
func (p *Problem) Unwrap() error { return p.Err }

// Problems splits an error made of problems into them, one line each, in
// the order of the file; any other error comes back alone.
func Problems(err error) []error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if joined, ok := e.(interface{ Unwrap() []error }); ok {
			return joined.Unwrap()
		}
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// List collects what is wrong while a file is read, so that one run
// reports everything rather than one mistake per edit.
type List struct {
	File  string // how messages name the file
	found []error
}

// Add records a problem at line (0: none).
func (l *List) Add(line int, err error) {
	l.found = append(l.found, &Problem{File: l.File, Line: line, Err: err})
}

// Addf records a problem at line, formatted as by fmt.Errorf.
func (l *List) Addf(line int, format string, args ...any) {
	l.Add(line, fmt.Errorf(format, args...))
}

// Len is the number of problems recorded.
func (l *List) Len() int { return len(l.found) }

// Err returns the problems in the order of their lines, which is the
// order someone fixing the file goes through it; nil when there are none.
func (l *List) Err() error {
	slices.SortStableFunc(l.found, func(a, b error) int {
		return cmp.Compare(a.(*Problem).Line, b.(*Problem).Line)
	})
	return errors.Join(l.found...)
}

// Suggest returns the known word closest to a mistyped one, if any is
// close: at most two edits away.
func Suggest(s string, known []string) string {
	best, bestDist := "", 3 // farther than two edits is not a typo
	for _, k := range known {
		if d := editDistance(strings.ToLower(s), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, capped in effort by the short
// keys it is used on (the key typed is cut to 64 bytes).
func editDistance(a, b string) int {
	if len(a) > 64 {
		a = a[:64]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
