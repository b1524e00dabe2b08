package vpp

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
