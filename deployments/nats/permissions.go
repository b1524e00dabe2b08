// Package nats holds rollcall's NATS server configuration for
// deployments (accounts.conf, cluster.conf, nats-server.conf) and gives
// the poller's embedded server the same users and permissions: the
// permission sets of accounts.conf are the single definition of what each
// rollcall user may do.
package nats

import (
	_ "embed"
	"strings"
)

//go:embed accounts.conf
var accountsConf string

// Permissions is the part of accounts.conf that defines the permission
// sets $POLLER_PERMISSIONS, $NOTIFIER_PERMISSIONS and $REPLAY_PERMISSIONS,
// without its accounts: configuration text an embedded server can take
// before its own authorization block.
func Permissions() string {
	before, _, _ := strings.Cut(accountsConf, "\naccounts {")
	return before + "\n"
}
