package events

import (
	"fmt"
	"strings"
)

// CheckType returns nil when t is one of Types, and otherwise an error that
// names t and lists the valid types. The message has no package prefix: it
// is meant to follow the caller's own context (the variable or flag that
// held t).
func CheckType(t string) error {
	if validType(t) {
		return nil
	}
	return fmt.Errorf("unknown event type %q (valid types: %s)", t, strings.Join(Types, ", "))
}

// CheckSourceName returns nil when ValidSourceName(name), and otherwise an
// error that names it and says what a source name may be. Like CheckType's,
// the message is meant to follow the caller's context.
func CheckSourceName(name string) error {
	if ValidSourceName(name) {
		return nil
	}
	return fmt.Errorf("%q is not a possible source name (a source name is 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter)", name)
}
