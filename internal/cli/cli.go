// Package cli holds the command-line conventions of rollcall's binaries:
// -h, --help or "help" prints a subcommand's usage on stdout and exits 0;
// an unknown flag, argument or subcommand exits 2 with that usage, before
// anything starts; Go's own flag messages are never printed.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ErrUsage marks a command line that could not be parsed.
var ErrUsage = errors.New("usage")

// UsageError is a command line that could not be parsed, with the usage to
// print after it. It is ErrUsage.
type UsageError struct {
	Err   error
	Usage string
}

func (e *UsageError) Error() string        { return "usage: " + e.Err.Error() }
func (e *UsageError) Unwrap() error        { return e.Err }
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// IsHelp reports whether arg asks for help.
func IsHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// Parse parses a subcommand's flags. Help prints the subcommand's usage
// (the line, the flags with their defaults, then more) on stdout and
// reports help; an unknown flag or a stray argument is a UsageError.
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer, more string) (help bool, err error) {
	fs.SetOutput(io.Discard)
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) || err == nil && fs.NArg() > 0 && fs.Arg(0) == "help" {
		_, err := fmt.Fprint(stdout, Usage(fs, more))
		return true, err
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		return false, &UsageError{Err: err, Usage: Usage(fs, more)}
	}
	return false, nil
}

// Usage is a subcommand's usage: its name, its flags with defaults, and
// more.
func Usage(fs *flag.FlagSet, more string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s [flags]\n\nflags:\n", fs.Name())
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if more != "" {
		b.WriteString("\n" + more)
	}
	return b.String()
}
