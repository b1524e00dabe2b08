package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// DefaultMaxRawBytes is how much of a source's record an event or a KV
// record carries under user.raw before it is cut.
const DefaultMaxRawBytes = 64 << 10

// RawCutKey is the member CapRaw adds to a raw record it cut:
// {"cut": true, "bytes": <original size>}.
const RawCutKey = "_rollcallCut"

// maxRawMember is the largest top-level member CapRaw keeps as it is when it
// cuts a record.
const maxRawMember = 1 << 10

// CapRaw bounds a source's raw record to max bytes, so that one record of a
// size a directory may legally hold (a 2 MB display name) does not make
// every event and KV write of its user too large to store. A record within
// max is returned as it is. A larger JSON object keeps its top-level
// members in order, each member longer than 1 KiB replaced by the string
// "[cut: N bytes]", and gains the member RawCutKey; if that is still above
// max, or the record is not an object, only the RawCutKey marker remains.
// The second result reports whether the record was cut.
func CapRaw(raw json.RawMessage, max int) (json.RawMessage, bool) {
	if len(raw) <= max {
		return raw, false
	}
	marker := fmt.Sprintf(`{"cut":true,"bytes":%d}`, len(raw))
	if out, ok := cutMembers(raw, marker); ok && len(out) <= max {
		return out, true
	}
	return json.RawMessage(`{"` + RawCutKey + `":` + marker + `}`), true
}

// cutMembers rewrites the JSON object raw with its long members cut and the
// marker added; ok is false when raw is not a JSON object.
func cutMembers(raw json.RawMessage, marker string) (json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, ok := t.(string)
		if !ok {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		if key == RawCutKey {
			continue
		}
		k, _ := json.Marshal(key)
		if len(k) > maxRawMember {
			continue
		}
		b.Write(k)
		b.WriteByte(':')
		if len(v) > maxRawMember {
			b.WriteString(strconv.Quote(fmt.Sprintf("[cut: %d bytes]", len(v))))
		} else {
			b.Write(v)
		}
		b.WriteByte(',')
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	b.WriteString(`"` + RawCutKey + `":` + marker + `}`)
	return b.Bytes(), true
}
