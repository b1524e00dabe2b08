package veeam_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/pkg/events"
)

// FuzzDecodePageBounds: decodePage bounds neither the length of an
// instanceUid nor the size of a record (only the whole body is limited), so
// what a page may legally hold must be carried by the bounds the poller
// applies after it: every decoded user's key token is a valid subject token
// of at most events.MaxKeyLen bytes (a 1,500-character instanceUid is
// hashed), its subject is bounded, and its record, scrubbed of secrets and
// capped (to the least MAX_RAW_BYTES allowed, so that small inputs are cut
// too), is valid JSON within the cap with no secret member left.
// FuzzDecodePage checks the decoding itself.
// minRawBytes is the least MAX_RAW_BYTES the poller accepts.
const minRawBytes = 256

func FuzzDecodePageBounds(f *testing.F) {
	fixture, err := os.ReadFile("testdata/veeam-get-users-response.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	page := func(users ...string) []byte {
		return []byte(`{"meta":{"pagingInfo":{"total":1,"count":1,"offset":0}},"data":[` + strings.Join(users, ",") + `]}`)
	}
	f.Add(page(`{"instanceUid":"` + strings.Repeat("u", 1500) + `","userName":"long id","credentials":{"userName":"x","password":"p"}}`))
	f.Add(page(`{"instanceUid":"` + strings.Repeat("é.*> ", 60) + `"}`))
	f.Add(page(`{"instanceUid":"u-1","userName":"` + strings.Repeat("n", 2000) + `","credentials":{"password":"p"}}`))
	f.Add(page(`{"instanceUid":"u-1","profile":{"apiKey":"k","email":"a@b"},"Credentials":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		users, _, _, err := veeam.DecodePage("veeam", 1, body)
		if err != nil {
			return
		}
		for _, u := range users {
			key := events.EncodeKey(u.ID)
			if len(key) > events.MaxKeyLen || key == "" || strings.ContainsAny(key, ".*> \t\r\n") {
				t.Fatalf("id of %d bytes gives key %q (%d bytes), not a bounded subject token", len(u.ID), key, len(key))
			}
			if subj := events.Subject(u.Source, u.ID, events.TypeRoleChanged); len(subj) > 64+events.MaxKeyLen+64 {
				t.Fatalf("subject of %d bytes", len(subj))
			}
			raw, err := events.ScrubRaw(u.Raw)
			if err != nil {
				t.Fatalf("decoded record cannot be scrubbed: %v", err)
			}
			raw, _ = events.CapRaw(raw, minRawBytes)
			if len(raw) > minRawBytes || !json.Valid(raw) {
				t.Fatalf("record of %d bytes carried as %d bytes, or not JSON", len(u.Raw), len(raw))
			}
			var top map[string]json.RawMessage
			if json.Unmarshal(raw, &top) == nil {
				for name := range top {
					if events.IsSecretMember(name) {
						t.Fatalf("carried record keeps %q", name)
					}
				}
			}
		}
	})
}
