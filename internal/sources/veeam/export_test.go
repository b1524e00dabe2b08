package veeam

import "github.com/rollcall/rollcall/pkg/events"

// DecodePage exposes the page decoder to the external tests and the fuzz
// target: it returns the users, the reported total and the echoed offset.
func DecodePage(source string, pageNo int, body []byte) ([]events.User, int, int, error) {
	p, err := decodePage(source, pageNo, body)
	return p.users, p.total, p.offset, err
}

// SetIDHash replaces the hash a first sweep tells ids apart by, for a
// test of colliding ids; it returns the function that puts it back.
func SetIDHash(h func(string) uint64) (restore func()) {
	old := idHash
	idHash = h
	return func() { idHash = old }
}
