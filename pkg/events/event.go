package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Event types (the CloudEvents "type" attribute).
const (
	TypeRegistered  = "user.registered"
	TypeAssociated  = "user.associated"
	TypeRetired     = "user.retired"
	TypeRoleChanged = "user.roleChanged"
	TypeUpdated     = "user.updated"
)

// Types lists every event type in the order a single change emits them.
var Types = []string{TypeRegistered, TypeAssociated, TypeRetired, TypeRoleChanged, TypeUpdated}

// Reasons carried in data.reason.
const (
	ReasonNew     = "new"     // first seen (or seen again after removal)
	ReasonStatus  = "status"  // the source's status field moved
	ReasonRemoved = "removed" // absent from a complete snapshot
	ReasonRole    = "role"
	ReasonFields  = "fields"
)

// ExtSourceKind is the CloudEvents extension naming the kind of source.
const ExtSourceKind = "sourcekind"

// SourceURI is the CloudEvents source of every event from the named source.
func SourceURI(source string) string { return "urn:rollcall:source:" + source }

// Event is a rollcall CloudEvent.
type Event = event.Event

// Spec describes one observed transition; New turns it into an Event.
type Spec struct {
	Type string
	// PrevRevision is the KV revision of the user's previous state, 0 when the
	// user was unknown. It makes a transition that recurs later a new event.
	PrevRevision uint64
	User         User
	Previous     *User
	Changes      []Change
	Reason       string
	Observed     time.Time
}

// ID is the deterministic event id: the same change observed twice (a crash
// and a rerun) gets the same id, so JetStream drops the second publish.
func ID(source, userID, typ string, prevRevision uint64, fingerprint string) string {
	var stack [256]byte
	b := stack[:0]
	var rev [20]byte
	for _, s := range [...]string{source, userID, typ, string(strconv.AppendUint(rev[:0], prevRevision, 10)), fingerprint} {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// New builds the CloudEvent for s, filling the whole envelope.
func New(s Spec) (Event, error) {
	u := s.User
	if !ValidSourceName(u.Source) {
		return Event{}, fmt.Errorf("events: invalid source name %q", u.Source)
	}
	if !validType(s.Type) {
		return Event{}, fmt.Errorf("events: unknown type %q", s.Type)
	}
	changes := s.Changes
	if changes == nil {
		changes = []Change{}
	}
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(ID(u.Source, u.ID, s.Type, s.PrevRevision, u.Fingerprint()))
	e.SetType(s.Type)
	e.SetSource(SourceURI(u.Source))
	e.SetSubject(u.ID)
	e.SetTime(s.Observed.UTC())
	e.SetExtension(ExtSourceKind, u.SourceKind)
	data := Data{User: u, Previous: s.Previous, Changes: changes, Reason: s.Reason}
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return Event{}, fmt.Errorf("events: encode data: %w", err)
	}
	return e, nil
}

// DecodeData reads the rollcall payload of e.
func DecodeData(e Event) (Data, error) {
	var d Data
	if err := json.Unmarshal(e.Data(), &d); err != nil {
		return Data{}, fmt.Errorf("events: decode data of %s: %w", e.ID(), err)
	}
	return d, nil
}

// SourceName returns the rollcall source name from an event's source URI.
func SourceName(e Event) string { return strings.TrimPrefix(e.Source(), "urn:rollcall:source:") }

// Validate checks that e is a well-formed rollcall event: a valid CloudEvent
// with a known type, a rollcall source, the sourcekind extension and a data
// payload that agrees with the envelope.
func Validate(e Event) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("events: invalid cloudevent: %w", err)
	}
	var errs []error
	if !validType(e.Type()) {
		errs = append(errs, fmt.Errorf("unknown type %q", e.Type()))
	}
	if !strings.HasPrefix(e.Source(), "urn:rollcall:source:") || !ValidSourceName(SourceName(e)) {
		errs = append(errs, fmt.Errorf("source %q is not urn:rollcall:source:<name>", e.Source()))
	}
	kind, _ := e.Extensions()[ExtSourceKind].(string)
	if !ValidKind(kind) {
		errs = append(errs, fmt.Errorf("extension sourcekind %q is not vpp, veeam or vpp2", kind))
	}
	if e.Subject() == "" {
		errs = append(errs, errors.New("subject is empty"))
	}
	if e.Time().IsZero() {
		errs = append(errs, errors.New("time is missing"))
	}
	if e.DataContentType() != event.ApplicationJSON {
		errs = append(errs, fmt.Errorf("datacontenttype %q is not application/json", e.DataContentType()))
	}
	d, err := DecodeData(e)
	if err != nil {
		errs = append(errs, err)
	} else {
		if d.User.ID != e.Subject() {
			errs = append(errs, fmt.Errorf("data.user.id %q does not match subject %q", d.User.ID, e.Subject()))
		}
		if d.User.Source != SourceName(e) || d.User.SourceKind != kind {
			errs = append(errs, errors.New("data.user source does not match the envelope"))
		}
		if d.Changes == nil {
			errs = append(errs, errors.New("data.changes is missing"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("events: invalid event %s: %w", e.ID(), errors.Join(errs...))
	}
	return nil
}

func validType(t string) bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}
