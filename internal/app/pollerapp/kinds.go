package pollerapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/state"
)

// ErrKindChanged is wrapped by the error that refuses to start a source
// whose name already holds users of another kind.
var ErrKindChanged = errors.New("source kind changed")

// checkKinds refuses a configuration that gives a source name already in
// the state a different kind (SOURCES=school:vpp becoming school:vpp2).
// The two kinds key their users differently (Apple userId, clientUserId),
// so under one name every stored user would be missing from the new
// listing and every listed user new: a mass retirement (held by the
// removal guard only while it lasts) and a registration for everyone.
// Moving a location between kinds is done under a new name, which seeds
// silently; the error says how.
func checkKinds(ctx context.Context, users jetstream.KeyValue, specs []sourceSpec) error {
	for _, s := range specs {
		stored, err := storedKind(ctx, users, s.Name)
		if err != nil {
			return fmt.Errorf("source %s: check the kind of its stored users: %w", s.Name, err)
		}
		if stored == "" || stored == s.Kind {
			continue
		}
		return fmt.Errorf("configuration: source %s is configured as kind %s, but the users rollcall stored for it are of kind %s; "+
			"a source's kind cannot change under the same name, because the user keys differ and every user would be retired and registered again. "+
			"Configure the %s source under a new name (e.g. %s-%s), let it seed, then remove %q from the configuration: %w",
			s.Name, s.Kind, stored, s.Kind, s.Name, s.Kind, s.Name, ErrKindChanged)
	}
	return nil
}

// storedKind is the kind of one stored user of the source name, "" when
// it has none.
func storedKind(ctx context.Context, users jetstream.KeyValue, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	w, err := users.Watch(ctx, name+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return "", err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case e, ok := <-w.Updates():
			if !ok || e == nil { // no (more) stored users
				return "", nil
			}
			var r state.Record
			if err := json.Unmarshal(e.Value(), &r); err != nil || r.User.SourceKind == "" {
				continue // not ours to judge: the poller reports it
			}
			return r.User.SourceKind, nil
		}
	}
}
