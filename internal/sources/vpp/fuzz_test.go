package vpp_test

import (
	"encoding/json"
	"os"
	"testing"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sources/vpp"
)

func FuzzDecodeResponse(f *testing.F) {
	fixture, err := os.ReadFile("testdata/vpp-getVPPUsersSrv-response.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	for _, s := range []string{
		`{"status":-1,"errorNumber":"9603","errorMessage":"Internal error"}`,
		`{"status":"0","batchToken":"b","totalBatchCount":"3","users":[{"userId":"1","status":"Retired"}]}`,
		`{"status":0,"sinceModifiedToken":"s","users":[]}`,
		`{"status":0,"users":[{"userId":1e3,"status":"Registered"},{"userId":1,"status":"x"}]}`,
		`{"status":0,"users":null}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, raws, err := vpp.DecodeResponse(body)
		if err != nil {
			return
		}
		seen := map[int64]bool{}
		for i, id := range ids {
			if seen[id] {
				t.Fatalf("duplicate userId %d accepted", id)
			}
			seen[id] = true
			if !utf8.Valid(raws[i]) || !json.Valid(raws[i]) {
				t.Fatalf("user %d raw is not valid UTF-8 JSON: %q", i, raws[i])
			}
		}
	})
}
