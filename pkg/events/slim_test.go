package events_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/pkg/events"
)

func TestSlim(t *testing.T) {
	long := strings.Repeat("n", 600<<10)
	prev := events.User{Source: "v", SourceKind: events.KindVeeam, ID: "u1", UserName: long, Status: "enabled", Raw: []byte(`{"note":"` + strings.Repeat("r", 200<<10) + `"}`)}
	gone := prev
	gone.Status = events.StatusRemoved
	e, err := events.New(events.Spec{Type: events.TypeRetired, User: gone, Previous: &prev, Reason: events.ReasonRemoved,
		Changes: []events.Change{{Field: "userName", From: long, To: "short"}}, Observed: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := events.Slim(e, 900<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Data()) > 900<<10 {
		t.Fatalf("slimmed event still %d bytes", len(s.Data()))
	}
	if cut, _ := s.Extensions()[events.ExtCut].(string); cut != "previous,changes" {
		t.Fatalf("%s = %q, want previous,changes", events.ExtCut, cut)
	}
	if s.ID() != e.ID() || s.Type() != e.Type() || s.Subject() != e.Subject() {
		t.Fatal("slimming changed the envelope")
	}
	if err := events.Validate(s); err != nil {
		t.Fatalf("slimmed event invalid: %v", err)
	}
	d, err := events.DecodeData(s)
	if err != nil {
		t.Fatal(err)
	}
	if d.User.UserName != long || len(d.User.Raw) != len(prev.Raw) {
		t.Fatal("data.user was cut: it must stay whole, the state the event reports")
	}
	for _, v := range []string{d.Previous.UserName, d.Changes[0].From} {
		if !strings.HasPrefix(v, strings.Repeat("n", events.SlimFieldBytes)) || !strings.HasSuffix(v, "…[cut: 614400 bytes]") {
			t.Fatalf("value not cut with its marker: %.40q…%q", v, v[len(v)-30:])
		}
	}
	if d.Changes[0].To != "short" || d.User.Status != events.StatusRemoved {
		t.Fatal("short values changed")
	}
	// Too large even so: data.user's raw record goes too.
	s3, err := events.Slim(e, 700<<10)
	if err != nil {
		t.Fatal(err)
	}
	if cut, _ := s3.Extensions()[events.ExtCut].(string); cut != "previous,changes,raw" || len(s3.Data()) > 700<<10 {
		t.Fatalf("%s = %q, %d bytes", events.ExtCut, cut, len(s3.Data()))
	}
	// An event with nothing long is left as it is.
	small, _ := events.New(events.Spec{Type: events.TypeRegistered, User: events.User{Source: "v", SourceKind: events.KindVeeam, ID: "u2", Status: "enabled"}, Observed: time.Now()})
	if s2, _ := events.Slim(small, 1<<20); string(s2.Data()) != string(small.Data()) {
		t.Fatal("a small event changed")
	}
}
