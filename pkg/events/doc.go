// Package events holds rollcall's public event contract: the normalised user,
// the five CloudEvents types the poller publishes, their deterministic ids,
// validation, and the mapping of an event to and from message headers in
// CloudEvents binary content mode.
//
// It deliberately imports neither NATS nor HTTP, so that any Go program can
// decode rollcall events from any transport: header maps are plain
// map[string][]string, which nats.Header and http.Header convert to directly.
package events
