package httpx

import (
	"net/http"
	"strconv"
)

// Observer is told about every HTTP request a client makes and every retry
// it schedules, so operators can see an API's error rate, not only whether
// the run as a whole failed.
type Observer interface {
	// Request reports one round trip: its status code ("200", "503") or
	// "error" when no response arrived.
	Request(code string)
	// Retry reports that a failed request will be tried again.
	Retry()
}

// Observe wraps hc's transport so that each round trip is reported to o. It
// returns a copy; hc is not changed. A nil o returns hc as it is.
func Observe(hc *http.Client, o Observer) *http.Client {
	if o == nil {
		return hc
	}
	cp := *hc
	rt := cp.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	cp.Transport = observed{rt: rt, o: o}
	return &cp
}

type observed struct {
	rt http.RoundTripper
	o  Observer
}

func (t observed) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.rt.RoundTrip(req)
	if err != nil {
		t.o.Request("error")
		return res, err
	}
	t.o.Request(strconv.Itoa(res.StatusCode))
	return res, nil
}
