package vpp

import "time"

// DecodeResponse exposes the response decoder to the fuzz test, which lives
// in package vpp_test with the other tests.
func DecodeResponse(body []byte) (ids []int64, raws [][]byte, err error) {
	r, err := decodeResponse(body)
	if err != nil {
		return nil, nil, err
	}
	for _, u := range r.Users {
		ids = append(ids, u.UserID)
		raws = append(raws, u.Raw)
	}
	return ids, raws, nil
}

// SetClock replaces the clock that ages the service configuration. Call it
// before the client is used.
func SetClock(c *Client, now func() time.Time) {
	if c.disc != nil {
		c.disc.now = now
	}
}
