package events

import (
	"embed"
	"fmt"
)

//go:embed schema/*.json
var schemas embed.FS

// Schema returns the JSON Schema (draft 2020-12) of an event type, describing
// the event in structured JSON form.
func Schema(typ string) ([]byte, error) {
	if !validType(typ) {
		return nil, fmt.Errorf("events: no schema for unknown type %q", typ)
	}
	return schemas.ReadFile("schema/" + typ + ".json")
}
