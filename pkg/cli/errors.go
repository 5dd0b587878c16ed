package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// UsageError is a wrong flag or argument: exit code 2.
type UsageError struct {
	Err error
	// Cmd is the command path, used to point at --help.
	Cmd string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...), Cmd: cmd.CommandPath()}
}

// ExitCode maps an error from Execute to the process exit code:
// 0 success, 2 wrong usage, 1 anything else.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var u *UsageError
	if errors.As(err, &u) {
		return 2
	}
	// cobra reports unknown commands and arguments as plain errors.
	if isCobraUsage(err) {
		return 2
	}
	return 1
}

// Message is the one line printed for err on stderr.
func Message(err error) string {
	var u *UsageError
	if errors.As(err, &u) && u.Cmd != "" {
		return fmt.Sprintf("error: %v (see '%s --help')", err, u.Cmd)
	}
	if isCobraUsage(err) {
		return fmt.Sprintf("error: %v (see 'ferry --help')", err)
	}
	return "error: " + err.Error()
}

// isCobraUsage recognises the usage errors cobra makes itself (unknown
// commands, required flags, argument counts) by how they begin: errors from
// ferry's own work are wrapped with context first, so a system error such
// as "invalid argument" deep inside one is not mistaken for wrong usage.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "required flag", "flag needs an argument", "invalid argument"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// noArgs refuses positional arguments with a usage error that hints at -f.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(cmd, "unexpected argument %q: pass files with -f", args[0])
	}
	return nil
}
