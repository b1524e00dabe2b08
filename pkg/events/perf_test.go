package events_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/rollcall/rollcall/pkg/events"
)

// referenceFingerprint is the fingerprint as first written (a hash.Hash fed
// field by field); Digest must give the same bytes, since fingerprints are
// stored in the KV and hashed into event ids.
func referenceFingerprint(u events.User) string {
	h := sha256.New()
	for _, f := range events.TrackedFields {
		v := u.Field(f)
		h.Write([]byte{byte(len(v) >> 24), byte(len(v) >> 16), byte(len(v) >> 8), byte(len(v))})
		h.Write([]byte(v))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func randomString(r *rand.Rand) string {
	alphabet := []string{"a", "Z", "0", " ", ".", "@", "É", "ß", "İ", "ǅ", "\"", "%", "\x00", "日本"}
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func TestDigestMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	users := []events.User{{}, {Status: "Associated", Role: "CompanyOwner"}, {Status: strings.Repeat("X", 600), Email: strings.Repeat("é", 300)}}
	for range 2000 {
		users = append(users, events.User{Status: randomString(r), Role: randomString(r), Email: randomString(r), UserName: randomString(r),
			FirstName: randomString(r), LastName: randomString(r), OrganizationID: randomString(r), ClientUserID: randomString(r), Raw: []byte(`{}`)})
	}
	for _, u := range users {
		want := referenceFingerprint(u)
		if got := u.Fingerprint(); got != want {
			t.Fatalf("Fingerprint(%+v) = %s, want %s", u, got, want)
		}
		d, ok := events.ParseDigest(want)
		if !ok || d != u.Digest() {
			t.Fatalf("ParseDigest(%s) = %x %v, want %x", want, d, ok, u.Digest())
		}
	}
	for _, bad := range []string{"", "00", strings.Repeat("g", 32), strings.Repeat("0", 33)} {
		if _, ok := events.ParseDigest(bad); ok {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
}

func TestIDMatchesReference(t *testing.T) {
	ref := func(source, userID, typ string, rev uint64, fp string) string {
		h := sha256.New()
		for _, s := range []string{source, userID, typ, fmt.Sprint(rev), fp} {
			fmt.Fprintf(h, "%d:%s", len(s), s)
		}
		return hex.EncodeToString(h.Sum(nil)[:16])
	}
	long := strings.Repeat("x", 400)
	for _, c := range [][5]string{{"vpp", "1", events.TypeAssociated, "0", "fp"}, {"veeam", long, events.TypeUpdated, "18446744073709551615", long}} {
		var rev uint64
		fmt.Sscan(c[3], &rev)
		if got, want := events.ID(c[0], c[1], c[2], rev, c[4]), ref(c[0], c[1], c[2], rev, c[4]); got != want {
			t.Errorf("ID%v = %s, want %s", c, got, want)
		}
	}
}

// bindingHeaders is ToHeaders as first written, through the SDK's generic
// binding.Write; the direct encoder must give the same headers and body.
func bindingHeaders(t *testing.T, e events.Event) (events.Headers, []byte) {
	t.Helper()
	w := &refWriter{h: events.Headers{}}
	if _, err := binding.Write(binding.WithForceBinary(context.Background()), binding.ToMessage(&e), nil, w); err != nil {
		t.Fatal(err)
	}
	w.h[events.HeaderMsgID] = []string{e.ID()}
	return w.h, w.body
}

type refWriter struct {
	h    events.Headers
	body []byte
}

func (w *refWriter) Start(context.Context) error { return nil }
func (w *refWriter) End(context.Context) error   { return nil }
func (w *refWriter) SetData(r io.Reader) (err error) {
	w.body, err = io.ReadAll(r)
	return err
}
func (w *refWriter) SetAttribute(a spec.Attribute, v any) error {
	s, err := types.Format(v)
	if err != nil {
		return err
	}
	if a.Kind() == spec.DataContentType {
		w.h[events.HeaderContentType] = []string{s}
		return nil
	}
	w.h["ce-"+a.Name()] = []string{escape(s)}
	return nil
}
func (w *refWriter) SetExtension(name string, v any) error {
	s, err := types.Format(v)
	if err != nil {
		return err
	}
	w.h["ce-"+name] = []string{escape(s)}
	return nil
}

func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7F || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestToHeadersMatchesBinding(t *testing.T) {
	var evs []events.Event
	for _, typ := range events.Types {
		evs = append(evs, sample(t, typ))
	}
	u := events.User{Source: "vpp", SourceKind: events.KindVPP, ID: "a b\"%ü", Status: "Registered"}
	e, err := events.New(events.Spec{Type: events.TypeRegistered, User: u, Observed: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))})
	if err != nil {
		t.Fatal(err)
	}
	evs = append(evs, e)
	bare := event.New(event.CloudEventsVersionV1)
	bare.SetID("x")
	bare.SetSource("urn:x")
	bare.SetType("t")
	evs = append(evs, bare)
	for _, e := range evs {
		h, body, err := events.ToHeaders(e)
		if err != nil {
			t.Fatal(err)
		}
		wh, wbody := bindingHeaders(t, e)
		if !reflect.DeepEqual(h, wh) || string(body) != string(wbody) {
			t.Errorf("ToHeaders(%s):\n got %v %q\nwant %v %q", e.ID(), h, body, wh, wbody)
		}
	}
}
