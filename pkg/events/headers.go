package events

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Header names used on the bus besides the ce- attributes.
const (
	HeaderContentType = "Content-Type"
	// HeaderMsgID is JetStream's de-duplication header; rollcall sets it to
	// the event id.
	HeaderMsgID  = "Nats-Msg-Id"
	headerPrefix = "ce-"
)

// Headers is a message header map; nats.Header and http.Header convert to it.
type Headers = map[string][]string

var specs = spec.WithPrefix(headerPrefix)

// ToHeaders encodes e in CloudEvents binary content mode: every attribute
// and extension as a percent-encoded "ce-" header, datacontenttype as
// Content-Type, the data as the body, and Nats-Msg-Id set to the event id.
func ToHeaders(e Event) (Headers, []byte, error) {
	w := &headerWriter{h: make(Headers, 10)}
	if err := writeBinary(e, w); err != nil {
		return nil, nil, fmt.Errorf("events: encode %s: %w", e.ID(), err)
	}
	w.h[HeaderMsgID] = []string{e.ID()}
	return w.h, w.body, nil
}

// writeBinary is what binding.Write does for an event in binary mode (every
// attribute the event's spec version defines and is set, then every
// extension, then the data), without the generic message machinery, which
// cost more than the headers themselves.
func writeBinary(e Event, w *headerWriter) error {
	sv := specs.Version(e.SpecVersion())
	if sv == nil || e.Context == nil {
		_, err := binding.Write(binding.WithForceBinary(context.Background()), binding.ToMessage(&e), nil, w)
		return err
	}
	for _, a := range sv.Attributes() {
		if v := a.Get(e.Context); v != nil {
			if err := w.SetAttribute(a, v); err != nil {
				return err
			}
		}
	}
	for k, v := range e.Extensions() {
		if err := w.SetExtension(k, v); err != nil {
			return err
		}
	}
	if d := e.Data(); len(d) > 0 {
		w.body = bytes.Clone(d)
	}
	return nil
}

// FromHeaders decodes an event from binary content mode headers and body (a
// structured-mode message, Content-Type application/cloudevents+json, is
// accepted too).
func FromHeaders(h Headers, body []byte) (Event, error) {
	m := &headerMessage{h: h, body: body}
	if ct := get(h, HeaderContentType); format.Lookup(ct) != nil {
		m.format = format.Lookup(ct)
	} else {
		m.version = specs.Version(percentDecode(get(h, headerPrefix+"specversion")))
	}
	var e Event
	var err error
	if m.version != nil {
		e, err = readBinary(m)
	} else {
		var ep *Event
		if ep, err = binding.ToEvent(context.Background(), m); err == nil {
			e = *ep
		}
	}
	if err != nil {
		return Event{}, fmt.Errorf("events: decode message %q: %w", get(h, HeaderMsgID), err)
	}
	scrubData(&e)
	return e, nil
}

// scrubData removes from an event's JSON data the secrets ScrubRaw
// removes. Events published since the poller scrubs records hold none, and
// their data is left as it is; events an earlier release published with a
// password or an invite code in data.user.raw lose it on the way out, so no
// sink, redrive or replay sends it on. (Its data's own members, user,
// previous, changes and reason, are not secret names.)
func scrubData(e *Event) {
	d := e.Data()
	if len(d) == 0 || (e.DataContentType() != "" && e.DataContentType() != event.ApplicationJSON) {
		return
	}
	if !maySecret(d) {
		return // no member name in it can be a secret's: nothing to walk
	}
	if clean, err := ScrubRaw(d); err == nil && len(clean) != len(d) {
		e.DataEncoded = clean
	}
}

// readBinary is what binding.ToEvent does with a binary-mode message
// (m.ReadBinary into a new event), without the generic machinery, which
// cost more than the decoding itself.
func readBinary(m *headerMessage) (Event, error) {
	e := event.New()
	if err := m.ReadBinary(context.Background(), (*eventBuilder)(&e)); err != nil {
		return Event{}, err
	}
	return e, nil
}

// eventBuilder is binding's messageToEventBuilder for binary mode.
type eventBuilder Event

func (b *eventBuilder) Start(context.Context) error { return nil }
func (b *eventBuilder) End(context.Context) error   { return nil }

func (b *eventBuilder) SetData(r io.Reader) error {
	d, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(d) > 0 {
		b.DataEncoded = d
	}
	return nil
}

func (b *eventBuilder) SetAttribute(attr spec.Attribute, value interface{}) error {
	if value == nil {
		_ = attr.Delete(b.Context)
		return nil
	}
	if attr.Kind() == spec.SpecVersion {
		str, err := types.ToString(value)
		if err != nil {
			return err
		}
		switch str {
		case event.CloudEventsVersionV03:
			b.Context = b.Context.AsV03()
		case event.CloudEventsVersionV1:
			b.Context = b.Context.AsV1()
		default:
			return fmt.Errorf("unrecognized event version %s", str)
		}
		return nil
	}
	return attr.Set(b.Context, value)
}

func (b *eventBuilder) SetExtension(name string, value interface{}) error {
	if value == nil {
		return b.Context.SetExtension(name, nil)
	}
	value, err := types.Validate(value)
	if err != nil {
		return err
	}
	return b.Context.SetExtension(name, value)
}

func get(h Headers, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	// Tolerate canonicalised keys (Ce-Id) from HTTP-shaped maps.
	for key, v := range h {
		if strings.EqualFold(key, k) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

type headerWriter struct {
	h    Headers
	body []byte
}

func (w *headerWriter) Start(context.Context) error { return nil }
func (w *headerWriter) End(context.Context) error   { return nil }

func (w *headerWriter) SetData(r io.Reader) error {
	b, err := io.ReadAll(r)
	w.body = b
	return err
}

func (w *headerWriter) SetAttribute(attr spec.Attribute, value interface{}) error {
	if value == nil {
		return nil
	}
	s, err := types.Format(value)
	if err != nil {
		return err
	}
	if attr.Kind() == spec.DataContentType {
		w.h[HeaderContentType] = []string{s}
		return nil
	}
	w.h[headerPrefix+attr.Name()] = []string{percentEncode(s)}
	return nil
}

func (w *headerWriter) SetExtension(name string, value interface{}) error {
	if value == nil {
		return nil
	}
	s, err := types.Format(value)
	if err != nil {
		return err
	}
	w.h[headerPrefix+name] = []string{percentEncode(s)}
	return nil
}

type headerMessage struct {
	h       Headers
	body    []byte
	format  format.Format
	version spec.Version
}

func (m *headerMessage) ReadEncoding() binding.Encoding {
	switch {
	case m.version != nil:
		return binding.EncodingBinary
	case m.format != nil:
		return binding.EncodingStructured
	}
	return binding.EncodingUnknown
}

func (m *headerMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.format == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, m.format, bytes.NewReader(m.body))
}

func (m *headerMessage) ReadBinary(ctx context.Context, w binding.BinaryWriter) error {
	if m.version == nil {
		return binding.ErrNotBinary
	}
	for k, vs := range m.h {
		if len(vs) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		var err error
		switch {
		case lk == strings.ToLower(HeaderContentType):
			err = w.SetAttribute(m.version.AttributeFromKind(spec.DataContentType), vs[0])
		case strings.HasPrefix(lk, headerPrefix):
			v := percentDecode(vs[0])
			if attr := m.version.Attribute(lk); attr != nil {
				err = w.SetAttribute(attr, v)
			} else {
				err = w.SetExtension(strings.TrimPrefix(lk, headerPrefix), v)
			}
		}
		if err != nil {
			return err
		}
	}
	if len(m.body) > 0 {
		return w.SetData(bytes.NewReader(m.body))
	}
	return nil
}

func (m *headerMessage) Finish(error) error { return nil }

func (m *headerMessage) GetAttribute(k spec.Kind) (spec.Attribute, interface{}) {
	attr := m.version.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if k == spec.DataContentType {
		if v := get(m.h, HeaderContentType); v != "" {
			return attr, v
		}
		return attr, nil
	}
	if v := get(m.h, headerPrefix+attr.Name()); v != "" {
		return attr, percentDecode(v)
	}
	return attr, nil
}

func (m *headerMessage) GetExtension(name string) interface{} {
	if v := get(m.h, headerPrefix+name); v != "" {
		return percentDecode(v)
	}
	return nil
}

// percentEncode applies the CloudEvents header value rule: space, '"', '%'
// and every byte outside printable ASCII are written as %XX of their UTF-8
// bytes.
func percentEncode(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i]) {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&0xF])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func mustEscape(c byte) bool { return c <= 0x20 || c >= 0x7F || c == '"' || c == '%' }

func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(fromHex(s[i+1])<<4 | fromHex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func fromHex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// Binary is a message in CloudEvents binary content mode whose ce-* headers
// and body are exactly what decoding it (FromHeaders) and encoding the event
// again (ToHeaders) would give, so a sink can send them on as they are.
type Binary struct {
	// ID is the event id, decoded.
	ID string
	// Header is the message's headers. Its ce-* keys are lower case and each
	// has one value, percent-encoded as the HTTP binding requires;
	// Content-Type, when set, is the event's datacontenttype. Other keys
	// (Nats-Msg-Id) are not the event's.
	Header Headers
	// Body is the event's data.
	Body []byte
}

// AsBinary returns the message h, body as a Binary when decoding it and
// encoding the event again would give back its ce-* headers, Content-Type
// and body unchanged: a delivery then skips both, which cost a notifier more
// than the rest of its work on a message. ok is false for anything else —
// another spec version, a structured-mode message, a value not in the form
// the encoder writes (a time not in UTC, upper-case hex, a value the
// decoder trims, invalid UTF-8), a missing id, source or type, data that
// may hold a secret ScrubRaw removes — and the caller decodes it with
// FromHeaders, which also rejects what cannot be decoded.
func AsBinary(h Headers, body []byte) (Binary, bool) {
	var id string
	var have int
	const hasSpec, hasID, hasSource, hasType = 1, 2, 4, 8
	for k, vs := range h {
		if len(k) < len(headerPrefix) || !strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
			if strings.EqualFold(k, HeaderContentType) {
				// Only the canonical spelling: the decoder takes any, but
				// which of two it takes would depend on map order.
				if k != HeaderContentType || len(vs) != 1 || vs[0] == "" || format.Lookup(vs[0]) != nil {
					return Binary{}, false
				}
			}
			continue
		}
		name := k[len(headerPrefix):]
		if k[:len(headerPrefix)] != headerPrefix || !lowerAlnum(name) || len(vs) != 1 {
			return Binary{}, false
		}
		v, ok := canonicalDecode(vs[0])
		if !ok {
			return Binary{}, false
		}
		switch name {
		case "specversion":
			if v != event.CloudEventsVersionV1 {
				return Binary{}, false
			}
			have |= hasSpec
		case "id":
			id, have = v, have|hasID
			ok = strings.TrimSpace(v) == v
		case "type":
			have |= hasType
			ok = strings.TrimSpace(v) == v
		case "subject":
			ok = strings.TrimSpace(v) == v
		case "source":
			have |= hasSource
			ok = sameURIRef(v)
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			ok = err == nil && !t.IsZero() && types.FormatTime(t) == v
		case "datacontenttype", "dataschema", "data":
			// Sent as Content-Type, or rollcall's events have none: the
			// decoder's way is the safe one.
			ok = false
		}
		if !ok {
			return Binary{}, false
		}
	}
	if have != hasSpec|hasID|hasSource|hasType {
		return Binary{}, false
	}
	if len(body) > 0 && maySecret(body) {
		return Binary{}, false // FromHeaders scrubs it, if it holds one
	}
	return Binary{ID: id, Header: h, Body: body}, true
}

// lowerAlnum reports whether s is a non-empty run of a-z and 0-9: the
// attribute names the encoder writes (an extension name is lower-cased by
// the decoder).
func lowerAlnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// canonicalDecode percent-decodes v when v is exactly what percentEncode
// writes for the result: no byte that must be encoded appears raw, each
// %XY is upper-case hex of a byte that must be, and the decoded value is
// valid UTF-8 (which the encoders agree on; the webhook writes invalid
// UTF-8 as U+FFFD). The value is not empty.
func canonicalDecode(v string) (string, bool) {
	if v == "" {
		return "", false
	}
	escaped := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '%' {
			if mustEscape(c) {
				return "", false
			}
			continue
		}
		if i+2 >= len(v) || !isUpperHex(v[i+1]) || !isUpperHex(v[i+2]) || !mustEscape(fromHex(v[i+1])<<4|fromHex(v[i+2])) {
			return "", false
		}
		escaped = true
		i += 2
	}
	if !escaped {
		return v, true
	}
	d := percentDecode(v)
	return d, utf8.ValidString(d)
}

// sameURIRef reports whether the decoder's URI reference for v formats as
// v again.
func sameURIRef(v string) bool {
	u, err := url.Parse(v)
	return err == nil && u.String() == v
}
