package events_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rollcall/rollcall/pkg/events"
)

func TestEncodeKey(t *testing.T) {
	tests := []struct{ id, key string }{
		{"1", "1"},
		{"c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb", "c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb"},
		{"user3@test.com", "user3_40test_2Ecom"},
		{"a b", "a_20b"},
		{"a_b", "a_5Fb"},
		{"*", "_2A"},
		{">", "_3E"},
		{"ü", "_C3_BC"},
		{"", "_"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := events.EncodeKey(tt.id); got != tt.key {
				t.Fatalf("EncodeKey(%q) = %q, want %q", tt.id, got, tt.key)
			}
			back, err := events.DecodeKey(tt.key)
			if err != nil || back != tt.id {
				t.Fatalf("DecodeKey(%q) = %q, %v", tt.key, back, err)
			}
		})
	}
	for _, bad := range []string{"", "a.b", "_2", "_2a", "_41", "a b"} {
		if _, err := events.DecodeKey(bad); err == nil {
			t.Errorf("DecodeKey(%q) accepted a key EncodeKey cannot make", bad)
		}
	}
}

// TestLongKeysAreHashed: an id whose encoding would exceed MaxKeyLen gets a
// fixed-size hashed token (a 1,500-character Veeam instanceUid once became a
// 4.5 kB subject and the server closed the connection), distinct for
// distinct ids, stable, never equal to a reversible encoding.
func TestLongKeysAreHashed(t *testing.T) {
	plain := strings.Repeat("a", events.MaxKeyLen)
	if got := events.EncodeKey(plain); got != plain {
		t.Fatalf("an id of exactly MaxKeyLen plain bytes should stay as it is, got %q", got)
	}
	escaped := strings.Repeat(".", events.MaxKeyLen/3)
	if got := events.EncodeKey(escaped); events.IsHashedKey(got) || len(got) > events.MaxKeyLen {
		t.Fatalf("an id whose encoding fits should stay reversible, got %q", got)
	}
	for name, id := range map[string]string{
		"plain":   strings.Repeat("u", 1500),
		"escaped": strings.Repeat("ü.", 200),
		"2000":    strings.Repeat("x", 2000) + "@example.com",
	} {
		t.Run(name, func(t *testing.T) {
			key := events.EncodeKey(id)
			if !events.IsHashedKey(key) || !validToken(key) || len(key) > events.MaxKeyLen {
				t.Fatalf("EncodeKey(%d bytes) = %q, want a hashed token", len(id), key)
			}
			if events.EncodeKey(id) != key {
				t.Fatal("hashed key is not stable")
			}
			if events.EncodeKey(id+"!") == key {
				t.Fatal("two ids share a hashed key")
			}
			if _, err := events.DecodeKey(key); !errors.Is(err, events.ErrHashedKey) {
				t.Fatalf("DecodeKey = %v, want ErrHashedKey", err)
			}
			subject := events.Subject("veeam", id, events.TypeRegistered)
			if len(subject) > 128 {
				t.Fatalf("subject of %d bytes", len(subject))
			}
		})
	}
}

func TestSubject(t *testing.T) {
	if got := events.Subject("vpp", "1", events.TypeAssociated); got != "rollcall.events.vpp.1.user.associated" {
		t.Fatalf("subject = %q", got)
	}
	if got := events.StateKey("veeam", "a.b"); got != "veeam.a_2Eb" {
		t.Fatalf("state key = %q", got)
	}
}

// validToken is NATS's rule for one subject token combined with the KV key
// alphabet, which is stricter.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=' || c == '/') {
			return false
		}
	}
	return !strings.ContainsAny(s, ".*> \t\r\n")
}

func FuzzEncodeKey(f *testing.F) {
	for _, s := range []string{"1", "user@test.com", "a.b", "a b", "*", ">", "ü", "_", "_5F", "", "\x00", "c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		key := events.EncodeKey(id)
		if !validToken(key) {
			t.Fatalf("EncodeKey(%q) = %q is not a valid subject token / KV key", id, key)
		}
		if len(key) > events.MaxKeyLen {
			t.Fatalf("EncodeKey(%d bytes) is %d bytes, above MaxKeyLen", len(id), len(key))
		}
		back, err := events.DecodeKey(key)
		if events.IsHashedKey(key) {
			if !errors.Is(err, events.ErrHashedKey) {
				t.Fatalf("DecodeKey(hashed %q) = %q, %v; want ErrHashedKey", key, back, err)
			}
			return
		}
		if err != nil || back != id {
			t.Fatalf("round trip %q → %q → %q, %v", id, key, back, err)
		}
		// Whatever DecodeKey accepts must re-encode to the same key.
		if dec, err := events.DecodeKey(id); err == nil && events.EncodeKey(dec) != id && !events.IsLegacyKey(id) {
			t.Fatalf("DecodeKey accepted non-canonical %q", id)
		}
		_ = utf8.ValidString(id)
	})
}

func FuzzFromHeaders(f *testing.F) {
	f.Add("1.0", "abc", "user.registered", "urn:rollcall:source:vpp", "1", "vpp", []byte(`{"user":{"source":"vpp","sourceKind":"vpp","id":"1","status":"Registered"},"previous":null,"changes":[]}`))
	f.Add("%", "%zz", "user.updated", "", "", "", []byte("{"))
	f.Fuzz(func(t *testing.T, spec, id, typ, source, subject, kind string, body []byte) {
		h := events.Headers{"ce-specversion": {spec}, "ce-id": {id}, "ce-type": {typ}, "ce-source": {source}, "ce-subject": {subject}, "ce-sourcekind": {kind}, "ce-time": {"2026-11-23T12:00:00Z"}, "Content-Type": {"application/json"}}
		e, err := events.FromHeaders(h, body)
		if err != nil {
			return
		}
		if events.Validate(e) == nil {
			// A valid event must survive a round trip unchanged.
			h2, b2, err := events.ToHeaders(e)
			if err != nil {
				t.Fatal(err)
			}
			e2, err := events.FromHeaders(h2, b2)
			if err != nil || e2.ID() != e.ID() || e2.Subject() != e.Subject() {
				t.Fatalf("round trip of a valid event failed: %v", err)
			}
		}
	})
}
