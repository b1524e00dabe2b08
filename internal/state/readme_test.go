package state

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestREADMEDescribesWhatTheSourcesBucketHolds is finding 7 of issue 12:
// the README called rollcall_sources "(cursors)" while it holds the
// guard's memory, leases and a lastFullSync that idle runs do not update.
// Every field stored there must be described where the README says what
// NATS holds.
func TestREADMEDescribesWhatTheSourcesBucketHolds(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if strings.Contains(readme, "rollcall_sources (cursors)") {
		t.Error(`the README's diagram still calls rollcall_sources "(cursors)"`)
	}
	start := strings.Index(readme, "**What NATS holds**")
	if start < 0 {
		t.Fatal("the README has no **What NATS holds** paragraph")
	}
	section := readme[start:]
	if end := strings.Index(section[2:], "\n- **"); end > 0 {
		section = section[:end+2]
	}
	section = strings.Join(strings.Fields(section), " ")
	want := []string{"`<source>.state`", "`<source>.lease`", "changed nothing writes nothing", "rollcall_source_last_success_timestamp_seconds"}
	for _, typ := range []reflect.Type{reflect.TypeFor[Source](), reflect.TypeFor[HeldRemovals](), reflect.TypeFor[Lease]()} {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			want = append(want, "`"+name+"`")
		}
	}
	for _, w := range want {
		if !strings.Contains(section, w) {
			t.Errorf("the README's **What NATS holds** does not mention %s", w)
		}
	}
}
