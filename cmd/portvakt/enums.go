package main

import (
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portvakt/portvakt/audit"
	"github.com/portvakt/portvakt/hsm"
)

// enumFlag is a flag that takes one of a few values: anything else is a
// usage error that lists them, and the shells complete them.
type enumFlag struct {
	name   string
	values []string
}

// auditKinds are the kinds of record `audit query --kind` selects.
var auditKinds = enumFlag{"kind", []string{
	audit.KindDecision, audit.KindSignature, audit.KindOutcome, audit.KindKey, audit.KindStart,
	audit.KindCheckpoint, audit.KindGap, audit.KindHeadGap,
}}

// keySizes are the RSA key sizes `hsm keygen --bits` makes.
var keySizes = enumFlag{"bits", []string{strconv.Itoa(hsm.MinKeyBits), strconv.Itoa(hsm.DefaultKeyBits)}}

// check refuses a value that is not one of f's; "" (the flag not given)
// is left to the command.
func (f enumFlag) check(value string) error {
	if value == "" || slices.Contains(f.values, value) {
		return nil
	}
	return usagef("--%s %q: give one of %s", f.name, value, strings.Join(f.values, ", "))
}

// complete registers the values for shell completion of cmd's flag.
func (f enumFlag) complete(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc(f.name, cobra.FixedCompletions(f.values, cobra.ShellCompDirectiveNoFileComp))
}
