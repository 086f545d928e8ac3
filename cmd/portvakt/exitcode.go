package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// The exit statuses of every command. This table is the one place they
// are defined; docs/cli.md and `portvakt --help` show it.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitDenied      = 3
	exitUnsealed    = 4
	exitGaps        = 5
	exitUnavailable = 69 // EX_UNAVAILABLE of sysexits.h: a service is not there now
)

var exitStatuses = []struct {
	code    int
	meaning string
}{
	{exitOK, "done: the command did what was asked"},
	{exitFailure, "failed: the message says what to fix"},
	{exitUsage, "bad usage: a flag, an argument, an unknown value or a nonsense number (the message lists what is valid)"},
	{exitDenied, "denied by the policy (`token` on PERMISSION_DENIED, `policy explain` on DENY)"},
	{exitUnsealed, "`audit verify`: records no checkpoint seals"},
	{exitGaps, "`audit verify`: the log has gap records"},
	{exitUnavailable, "unavailable: the daemon, the HSM or Maskinporten cannot be reached now; try again later"},
}

// exitStatusHelp is the table as `portvakt --help` prints it.
func exitStatusHelp() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, s := range exitStatuses {
		fmt.Fprintf(tw, "  %d\t%s\n", s.code, s.meaning)
	}
	_ = tw.Flush()
	return b.String()
}

// report prints err for the person who ran the command, unless the
// command has shown it already, and returns the exit status for it.
func report(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	if !shown(err) {
		// One line, what went wrong and what to do: operators read this.
		fmt.Fprintln(w, "portvakt:", err)
	}
	return exitStatus(err)
}

// shown reports whether the command has printed the verdict err stands
// for (a DENY line, the gaps, the unsealed records) on standard output,
// or serve has logged it as a JSON record.
func shown(err error) bool {
	var (
		deny   denied
		logged loggedError // serve has written it to its JSON log
	)
	return errors.As(err, &deny) || errors.As(err, &logged) || isUnsealed(err) || isGaps(err)
}

// exitStatus is the row of the table that err falls in.
func exitStatus(err error) int {
	var (
		usage usageError
		deny  denied
		ref   refusal
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &deny):
		return exitDenied
	case errors.As(err, &ref):
		return ref.exitStatus()
	case isGaps(err):
		return exitGaps
	case isUnsealed(err):
		return exitUnsealed
	case isUnavailable(err):
		return exitUnavailable
	}
	return exitFailure
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// usagef is a usageError with a message.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }
