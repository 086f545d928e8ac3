package policy

import (
	"github.com/portvakt/portvakt/internal/strictyaml"
)

// Problem is one thing wrong in a policy file. Load and Parse return every
// problem they find joined with errors.Join, so a caller can list them with
// Problems, or find one with errors.As. It is the configuration's kind of
// problem too: one FILE:LINE: message for every file Portvakt reads.
type Problem = strictyaml.Problem

// Problems splits an error from Load, Parse or Store.Reload into its
// problems, one line each, in the order of the file; any other error comes
// back alone.
func Problems(err error) []error { return strictyaml.Problems(err) }

// problems collects what is wrong while a file is read, so that one run
// reports everything rather than one mistake per edit.
type problems struct{ strictyaml.List }

func (ps *problems) add(line int, err error) { ps.Add(line, err) }

func (ps *problems) addf(line int, format string, args ...any) { ps.Addf(line, format, args...) }

// err returns the problems in the order of their lines.
func (ps *problems) err() error { return ps.Err() }
