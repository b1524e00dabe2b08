package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/veeam"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/pkg/events"
)

func TestScrubRaw(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want string // "" = raw unchanged
	}{
		{"nothing to remove", `{"instanceUid":"u-1","userName":"Alpha"}`, ""},
		{"spacing and escapes kept", "{ \"a\" : \"x\\u00e9\" ,\n\t\"b\":[1, 2 ] }", ""},
		{"veeam credentials object", `{"instanceUid":"u-1","credentials":{"userName":"Alpha","password":"hunter2"},"role":"companyOwner"}`,
			`{"instanceUid":"u-1","role":"companyOwner"}`},
		{"credentials whatever its value", `{"credentials":"user:hunter2","id":1}`, `{"id":1}`},
		{"vpp invite code and url", `{"userId":3,"status":"Registered","inviteCode":"f551","inviteUrl":"https://buy.itunes.apple.com/x?inviteCode=f551"}`,
			`{"userId":3,"status":"Registered"}`},
		{"first member removed", `{"password":"p","a":1}`, `{"a":1}`},
		{"last member removed", `{"a":1,"password":"p"}`, `{"a":1}`},
		{"every member removed", `{ "password" : "p" , "token":"t" }`, `{ }`},
		{"spacing of kept members kept", "{\n  \"a\": 1,\n  \"pwd\": \"p\",\n  \"b\": 2\n}", "{\n  \"a\": 1,\n  \"b\": 2\n}"},
		{"nested at any depth", `{"a":{"b":{"c":[{"apiKey":"k","d":1}],"Secret":"s"}},"e":2}`, `{"a":{"b":{"c":[{"d":1}]}},"e":2}`},
		{"case and separators ignored", `{"PASSWORD":1,"api_key":2,"X-Api-Key":3,"refresh_token":4,"Pass_Word":5,"keep":6}`, `{"keep":6}`},
		{"escaped name", `{"pass\u0077ord":"p","a\"b":1}`, `{"a\"b":1}`},
		{"braces inside strings", `{"password":"}{][,\"","a":"}{"}`, `{"a":"}{"}`},
		{"removed value is an array", `{"tokenCount":1,"token":[{"x":"]"},2],"b":true}`, `{"tokenCount":1,"b":true}`},
		{"plurals go whole", `{"tokens":1,"apiKeys":[{"id":"k1","key":"v"}],"b":true}`, `{"b":true}`},
		{"duplicate names", `{"password":1,"a":1,"password":2}`, `{"a":1}`},
		{"array of objects", ` [{"inviteUrl":"u","userId":1},{"userId":2}] `, ` [{"userId":1},{"userId":2}] `},
		{"string", `"password"`, ""},
		{"number", `12.5e3`, ""},
		{"null", `null`, ""},
		{"empty object", `{ }`, ""},
		{"empty array", `[ ]`, ""},
		{"look-alikes kept", `{"key":1,"pin":2,"hash":3,"itsIdHash":4,"userName":5,"tokenExpDate":6,"passive":7}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.raw
			}
			got, err := events.ScrubRaw(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != want {
				t.Fatalf("ScrubRaw(%s)\n got %s\nwant %s", tt.raw, got, want)
			}
		})
	}
}

// A record with nothing to remove comes back as the same slice, without
// allocating: the poller scrubs every user of every run.
func TestScrubRawKeepsCleanRecord(t *testing.T) {
	raw := json.RawMessage(`{"instanceUid":"u-1","profile":{"firstName":"A","email":null,"title":"mr"},"list":[1,{"x":"y\"}"}]}`)
	got, err := events.ScrubRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &raw[0] || len(got) != len(raw) {
		t.Fatal("a clean record was copied")
	}
	// Validating may allocate (under -race, sync.Pool drops json's
	// scanners now and then); scrubbing must add nothing to that.
	valid := mallocsPerCall(func() { _ = json.Valid(raw) })
	if n := mallocsPerCall(func() { _, _ = events.ScrubRaw(raw) }); n-valid > 0.5 {
		t.Fatalf("%.2f allocations scrubbing a clean record, %.2f validating it", n, valid)
	}
}

// mallocsPerCall is the average number of heap allocations of f, measured
// as a fraction (testing.AllocsPerRun rounds down).
func mallocsPerCall(f func()) float64 {
	const runs = 5000
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / runs
}

func TestScrubRawErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{"truncated", `{"password":"hunter2"`},
		{"trailing data", `{"a":1} {"b":2}`},
		{"bare word", `password`},
		{"only spaces", "  "},
		{"single quotes", `{'password':'x'}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := events.ScrubRaw(json.RawMessage(tt.raw))
			if !errors.Is(err, events.ErrRawNotJSON) || got != nil {
				t.Fatalf("ScrubRaw = %q, %v; want ErrRawNotJSON", got, err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "password") {
				t.Fatalf("error %q quotes the record", err)
			}
		})
	}
	for _, raw := range []json.RawMessage{nil, {}} {
		if got, err := events.ScrubRaw(raw); err != nil || len(got) != 0 {
			t.Fatalf("ScrubRaw(%q) = %q, %v; want it back", raw, got, err)
		}
	}
}

func TestIsSecretMember(t *testing.T) {
	tests := []struct {
		name   string
		secret bool
	}{
		{"password", true}, {"Password", true}, {"newPassword", true}, {"password_hash", true}, {"passwd", true},
		{"pwd", true}, {"PWD", true}, {"pass", true}, {"passphrase", true},
		{"secret", true}, {"clientSecret", true}, {"client_secret", true},
		{"token", true}, {"accessToken", true}, {"refresh_token", true}, {"sToken", true}, {"mfa_token", true}, {"id-token", true},
		{"apiKey", true}, {"api_key", true}, {"X-API-KEY", true}, {"privateKey", true},
		{"credentials", true}, {"Credentials", true}, {"credential", true}, {"userCredentials", true},
		{"authorization", true}, {"Cookie", true},
		{"inviteCode", true}, {"inviteUrl", true}, {"invite_url", true}, {"invitationCode", true}, {"InvitationURL", true},
		{"accessTokens", true}, {"refreshTokens", true}, {"apiKeys", true}, {"passcode", true}, {"recoveryCodes", true},
		{"backup_codes", true}, {"totp", true}, {"inviteLink", true}, {"inviteUrls", true}, {"invitation_uri", true},
		{"tokenCount", false}, {"keys", false}, {"footprint", false}, {"inviteCount", false}, {"passes", false},
		{"userName", false}, {"email", false}, {"instanceUid", false}, {"itsIdHash", false}, {"idHash", false},
		{"key", false}, {"pin", false}, {"status", false}, {"tokenExpDate", false}, {"passive", false},
		{"mfaPolicyStatus", false}, {"clientUserIdStr", false}, {"invited", false}, {"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := events.IsSecretMember(tt.name); got != tt.secret {
				t.Fatalf("IsSecretMember(%q) = %v, want %v", tt.name, got, tt.secret)
			}
		})
	}
}

// The documented Veeam example response, record by record: credentials go,
// every other member stays as it was, in its place.
func TestScrubRawVeeamFixture(t *testing.T) {
	body, err := os.ReadFile("../../internal/sources/veeam/testdata/veeam-get-users-response.json")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 3 {
		t.Fatalf("%d records in the fixture, want 3", len(page.Data))
	}
	for _, rec := range page.Data {
		if !bytes.Contains(rec, []byte(`"credentials"`)) {
			t.Fatalf("fixture record without credentials: %s", rec)
		}
		got, err := events.ScrubRaw(rec)
		if err != nil {
			t.Fatal(err)
		}
		// The expected record: the fixture's bytes with the credentials
		// member and the comma before it cut out.
		i := bytes.Index(rec, []byte(`"credentials"`))
		comma := bytes.LastIndexByte(rec[:i], ',')
		end := bytes.IndexByte(rec[i:], '}') + i + 1
		want := append(append([]byte{}, rec[:comma]...), rec[end:]...)
		if !bytes.Equal(got, want) {
			t.Fatalf("scrubbed record\n%s\nwant\n%s", got, want)
		}
		if bytes.Contains(got, []byte("password")) {
			t.Fatalf("password left in %s", got)
		}
	}
}

// What the sources actually hand the poller: the raw records read over
// HTTP from the fakes, which serve the documented examples.
func TestScrubRawSourceRecords(t *testing.T) {
	ctx := context.Background()
	veeamAPI := httptest.NewServer(veeamtest.NewServer("key", veeamtest.FixtureUsers()...))
	defer veeamAPI.Close()
	vc, err := veeam.New(veeam.Config{Name: "veeam", BaseURL: veeamAPI.URL, Token: "key"})
	if err != nil {
		t.Fatal(err)
	}
	const sToken = "c2VjcmV0"
	vppAPI := httptest.NewServer(vpptest.NewServer(sToken, vpptest.FixtureUsers()...))
	defer vppAPI.Close()
	pc, err := vpp.New(vpp.Config{Name: "vpp", BaseURL: vppAPI.URL + "/mdm", SToken: sToken})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  interface {
			Snapshot(context.Context, sources.Request) (sources.Snapshot, error)
		}
		removed []string // members some record has before and none after
		kept    []string // members every record keeps
	}{
		{"veeam", vc, []string{"credentials"}, []string{"instanceUid", "organizationUid", "userName", "status", "role", "profile"}},
		{"vpp", pc, []string{"inviteCode", "inviteUrl"}, []string{"userId", "email", "clientUserIdStr", "status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := tt.src.Snapshot(ctx, sources.Request{})
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Users) == 0 {
				t.Fatal("no users")
			}
			had := map[string]bool{}
			for _, u := range snap.Users {
				before := memberNames(t, u.Raw)
				for _, n := range before {
					had[n] = true
				}
				got, err := events.ScrubRaw(u.Raw)
				if err != nil {
					t.Fatal(err)
				}
				after := memberNames(t, got)
				var want []string
				for _, n := range before {
					if !slices.Contains(tt.removed, n) {
						want = append(want, n)
					}
				}
				if strings.Join(after, ",") != strings.Join(want, ",") {
					t.Errorf("user %s: members %v, want %v", u.ID, after, want)
				}
				for _, k := range tt.kept {
					if !slices.Contains(after, k) {
						t.Errorf("user %s lost %s", u.ID, k)
					}
				}
			}
			for _, r := range tt.removed {
				if !had[r] {
					t.Errorf("no record of the fake has %s: the test proves nothing", r)
				}
			}
		})
	}
}

// memberNames lists the names of the members of the object raw, in order.
func memberNames(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("raw %s is not an object", raw)
	}
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// FuzzScrubRaw: whatever a source sends, the scrubbed record is valid JSON
// holding no secret member at any depth, it is everything else of the
// record in the same order (a clean record byte for byte), and scrubbing
// it again changes nothing. Only invalid JSON is an error.
func FuzzScrubRaw(f *testing.F) {
	for _, s := range []string{
		`{"instanceUid":"u-1","credentials":{"userName":"A","password":null},"profile":{"title":"mr"}}`,
		`{"userId":3,"inviteCode":"c","inviteUrl":"https://x/?inviteCode=c"}`,
		`[{"pass\u0077ord":1},{"a":[{"apiKey":"k"}]}]`,
		"{ \"a\" : 1 ,\n \"token\" : [ ] }",
		`{"password":1,"password":2}`,
		`"password"`, `null`, `1e400`, `{`, ``, `{"a":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := events.ScrubRaw(raw)
		switch {
		case len(raw) == 0:
			if err != nil || len(out) != 0 {
				t.Fatalf("empty raw gave %q, %v", out, err)
			}
			return
		case !json.Valid(raw):
			if !errors.Is(err, events.ErrRawNotJSON) || out != nil {
				t.Fatalf("invalid JSON gave %q, %v", out, err)
			}
			return
		case err != nil:
			t.Fatalf("valid JSON %q refused: %v", raw, err)
		}
		if !json.Valid(out) {
			t.Fatalf("ScrubRaw(%q) = %q is not JSON", raw, out)
		}
		want, removed := tokensWithout(t, raw)
		got, left := tokensWithout(t, out)
		if left {
			t.Fatalf("ScrubRaw(%q) = %q still holds a secret member", raw, out)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("ScrubRaw(%q) = %q changed more than the secret members", raw, out)
		}
		if !removed && !bytes.Equal(out, raw) {
			t.Fatalf("ScrubRaw changed the clean record %q to %q", raw, out)
		}
		again, err := events.ScrubRaw(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("ScrubRaw is not idempotent: %q → %q → %q, %v", raw, out, again, err)
		}
	})
}

// tokensWithout reads raw token by token, as any JSON reader would, and
// returns its tokens without the secret members (their names and values);
// removed says whether it left any out. Besides IsSecretMember it checks
// the names the issue lists, so that a change to the rule cannot hide
// them.
func tokensWithout(t *testing.T, raw []byte) (toks []any, removed bool) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var walk func() // reads one value
	walk = func() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("read %q: %v", raw, err)
		}
		toks = append(toks, tok)
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					t.Fatalf("read %q: %v", raw, err)
				}
				name := k.(string)
				if events.IsSecretMember(name) || listedSecret(name) {
					removed = true
					var skip json.RawMessage
					if err := dec.Decode(&skip); err != nil {
						t.Fatalf("read %q: %v", raw, err)
					}
					continue
				}
				toks = append(toks, k)
				walk()
			}
			end, _ := dec.Token()
			toks = append(toks, end)
		case json.Delim('['):
			for dec.More() {
				walk()
			}
			end, _ := dec.Token()
			toks = append(toks, end)
		}
	}
	walk()
	return toks, removed
}

// listedSecret names what issue 14 says must never be carried.
func listedSecret(name string) bool {
	for _, s := range []string{"password", "passwd", "pwd", "secret", "token", "apiKey", "api_key", "credentials", "inviteCode", "inviteUrl"} {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return false
}
