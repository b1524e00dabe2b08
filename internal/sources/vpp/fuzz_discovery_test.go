package vpp

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode"
)

// FuzzServiceConfig: whatever VPPServiceConfigSrv answers, decoding it
// never panics; a success is a single JSON value whose service URLs are
// absolute http(s) URLs that can be requested, https whenever the
// configuration itself was read over https (the sToken travels in the
// body); an answer without a usable getUserSrvUrl fails lookups only, with
// ErrServiceConfig; every failure is retryable, an *APIError or
// ErrServiceConfig, and its text is short, printable and repeats nothing
// the server sent (it could be anything, the request echoed included).
func FuzzServiceConfig(f *testing.F) {
	for _, s := range []string{
		`{"status":0,"getUsersSrvUrl":"https://vpp.itunes.apple.com/mdm/getVPPUsersSrv","getUserSrvUrl":"https://vpp.itunes.apple.com/mdm/getVPPUserSrv","errorCodes":[{"errorNumber":9600,"errorMessage":"Missing"}]}`,
		`{"status":"0","getUsersSrvUrl":" https://a.example/u ","getUserSrvUrl":null}`,
		`{"status":0,"getUsersSrvUrl":"http://a.example/u","getUserSrvUrl":7}`,
		`{"status":-1,"errorNumber":9646,"errorMessage":"Too many requests"}`,
		`{"status":-1,"errorNumber":"9601"}`,
		`{"status":2}`,
		`{"status":0,"getUsersSrvUrl":"https://a.example/u"} trailing`,
		`{"status":0,"getUsersSrvUrl":"ftp://a.example/u"}`,
		`{"status":0,"getUsersSrvUrl":"https://user:pass@a.example/u"}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, https bool) {
		configURL := "http://vpp.example/mdm/VPPServiceConfigSrv"
		if https {
			configURL = "https://vpp.example/mdm/VPPServiceConfigSrv"
		}
		c, err := New(Config{Name: "vpp", ServiceConfigURL: configURL, SToken: "c2VjcmV0"})
		if err != nil {
			t.Fatal(err)
		}
		urls, floor, err := c.serviceURLs(body, 0)
		if err != nil {
			var retry retryError
			var ae *APIError
			if !errors.As(err, &retry) && !errors.As(err, &ae) && !errors.Is(err, ErrServiceConfig) {
				t.Fatalf("error %q is neither retryable, an API error nor ErrServiceConfig", err)
			}
			if floor < 0 {
				t.Fatalf("negative wait %v", floor)
			}
			plainText(t, err.Error())
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not one JSON value: %q", body)
		}
		usableURL(t, "getUsersSrvUrl", urls.users, https)
		switch {
		case urls.user == "" && !errors.Is(urls.userErr, ErrServiceConfig):
			t.Fatalf("no getUserSrvUrl, error %v", urls.userErr)
		case urls.user != "" && urls.userErr != nil:
			t.Fatalf("getUserSrvUrl %q with error %v", urls.user, urls.userErr)
		case urls.user != "":
			usableURL(t, "getUserSrvUrl", urls.user, https)
		default:
			plainText(t, urls.userErr.Error())
		}
	})
}

// usableURL fails unless s is an absolute http(s) URL a request can be
// sent to, https when must is.
func usableURL(t *testing.T, field, s string, https bool) {
	t.Helper()
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		t.Fatalf("%s %q accepted: not an absolute http(s) URL", field, s)
	case https && u.Scheme != "https":
		t.Fatalf("%s %q accepted from an https service configuration", field, s)
	case s != strings.TrimSpace(s):
		t.Fatalf("%s %q kept its surrounding space", field, s)
	}
	if _, err := http.NewRequest(http.MethodPost, s, nil); err != nil {
		t.Fatalf("%s %q accepted, but no request can be made to it: %v", field, s, err)
	}
}

// plainText fails when an error text could carry the server's bytes: it
// must be short printable ASCII.
func plainText(t *testing.T, s string) {
	t.Helper()
	if len(s) > 300 {
		t.Fatalf("error of %d bytes: %.300q…", len(s), s)
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			t.Fatalf("error %q has a character %q that rollcall's own text does not", s, r)
		}
	}
}
