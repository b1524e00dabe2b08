package poller

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rollcall/rollcall/pkg/events"
)

// encodeUsers streams the baseline: the same bytes as json.Marshal.
func TestEncodeUsersIsJSONMarshal(t *testing.T) {
	for _, users := range [][]events.User{
		nil,
		{},
		{{ID: "1", Status: "registered"}},
		{{ID: "<a&b>", Email: "ü\"", Raw: json.RawMessage(`{"x": [1, 2]}`)}, {ID: "2"}, {ID: "3", Raw: json.RawMessage(`null`)}},
	} {
		want, err := json.Marshal(users)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := encodeUsers(&got, users); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want) {
			t.Fatalf("encodeUsers:\n got %s\nwant %s", got.String(), want)
		}
	}
}
