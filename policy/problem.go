package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Problem is one thing wrong in a policy file. Load and Parse return every
// problem they find joined with errors.Join, so a caller can list them with
// Problems, or find one with errors.As.
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

// Unwrap returns the error the message is made of, such as an
// orgno.ErrInvalid.
func (p *Problem) Unwrap() error { return p.Err }

// Problems splits an error from Load, Parse or Store.Reload into its
// problems, one line each, in the order of the file; any other error comes
// back alone.
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

// problems collects what is wrong while a file is read, so that one run
// reports everything rather than one mistake per edit.
type problems struct {
	file  string
	found []error
}

func (ps *problems) add(line int, err error) {
	ps.found = append(ps.found, &Problem{File: ps.file, Line: line, Err: err})
}

func (ps *problems) addf(line int, format string, args ...any) {
	ps.add(line, fmt.Errorf(format, args...))
}

// err returns the problems in the order of their lines, which is the order
// someone fixing the file goes through it.
func (ps *problems) err() error {
	slices.SortStableFunc(ps.found, func(a, b error) int {
		return cmp.Compare(a.(*Problem).Line, b.(*Problem).Line)
	})
	return errors.Join(ps.found...)
}
