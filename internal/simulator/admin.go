// The simulator's admin API injects faults and changes the directory at run
// time. (This is a file comment, not the package's: see simulator.go.)
//
// Handler serves, beside the two directory APIs, an unauthenticated admin
// API under /admin/ (the simulator is a test tool: keep it on a loopback or
// private address). Requests and answers are JSON; every failure is
// {"error": "..."} with 400 for bad input, 404 for an unknown user or
// endpoint and 405 for a wrong method. Request bodies are limited to 1 MiB
// and decoded strictly: an unknown field is an error, so a typo never
// injects a different fault than intended.
//
//	POST   /admin/faults             queue a fault in one API's fake (202)
//	POST   /admin/expire-tokens      invalidate Veeam access tokens issued at /api/v3/token
//	POST   /admin/users/vpp          add or update a VPP user (201 created, 200 updated)
//	POST   /admin/users/veeam        add or update a Veeam user (201 created, 200 updated)
//	DELETE /admin/users/vpp/{id}     remove the VPP user with userId {id}
//	DELETE /admin/users/veeam/{id}   remove the Veeam user with instanceUid {id}
//	POST   /admin/case-flip          flip the case of every Veeam user's role and status
//	GET    /admin/state              users per API and requests served
//
// # Faults
//
// A fault is queued and consumed by the requests it matches, in the order
// injected; "times" (default 1) is how many requests it hits. The body names
// the API and then the fields of that fake's fault:
//
//	{"api": "vpp",                   Apple VPP getVPPUsersSrv
//	 "batch": 2,                     1-based batch of a listing; 0 or absent = the next request
//	 "times": 1,
//	 "httpStatus": 503,              answer with this HTTP status (300–599) ...
//	 "retryAfter": 5,                ... and this Retry-After: seconds (number or string) or an HTTP date
//	 "errorNumber": 9646,            or HTTP 200 {"status":-1,"errorNumber":9646,...}
//	 "errorMessage": "...",          with this message (default: Apple's)
//	 "truncate": true,               cut the JSON body in half
//	 "noTokens": true,               serve the batch without batchToken and sinceModifiedToken
//	 "emptyBatch": 2,                the next listing has an extra zero-user batch at this position
//	 "delayMs": 2000}                answer this much later (slow page)
//
//	{"api": "vpp2",                  Apple App and Book Management API v2 GET /mdm/v2/users
//	 "page": 2,                      1-based page (pageIndex+1); 0 or absent = the next request
//	 "times": 1,
//	 "lookup": true,                 aim at GET /users?clientUserId=… lookups instead of listings
//	 "httpStatus": 503,              answer with this HTTP status (300–599), with errorNumber's body if set ...
//	 "retryAfter": 5,                ... and this Retry-After: seconds or an HTTP date
//	 "errorNumber": 9646,            an ErrorResponse, with Apple's status for the number (or httpStatus) ...
//	 "errorMessage": "...",          ... this message (default: Apple's) ...
//	 "okStatus": true,               ... or with HTTP 200, as Apple sometimes answers
//	 "truncate": true,               cut the JSON body in half
//	 "changeVersion": true,          move the versionId before answering (the directory changed mid-walk)
//	 "delayMs": 2000}                answer this much later
//
//	{"api": "veeam",                 Veeam GET /api/v3/users
//	 "page": 2,                      1-based page (offset/limit+1); 0 or absent = the next request
//	 "times": 1,
//	 "status": 429,                  answer with this status (400–599) and an errors envelope ...
//	 "retryAfter": 1,                ... with errors[0].retryAfter in seconds ...
//	 "retryAfterHeader": "1",        ... and/or this Retry-After header ...
//	 "message": "...",               ... and this errors[0].message
//	 "truncate": true,               cut the JSON body in half
//	 "wrongOffset": true,            echo a wrong meta.pagingInfo.offset
//	 "delayMs": 2000,                answer this much later
//	 "insertBefore": {               paging drift: add this user just before serving the page
//	   "instanceUid": "00000000-0000-4000-8000-000000000001",
//	   "userName": "late", "role": "CompanyOwner", "status": "Enabled"}}
//
// httpStatus and errorNumber exclude each other, as do status and
// truncate/wrongOffset; retryAfter, retryAfterHeader and message need a
// status; a fault must do something. The answer echoes the queued fault.
//
// # Users
//
// POST /admin/users/vpp takes {"userId": 5001, "email", "clientUserIdStr",
// "status", "itsIdHash", "inviteCode", "inviteUrl"}; POST /admin/users/veeam
// takes {"instanceUid", "organizationUid", "userName", "role", "status",
// "mfaPolicyStatus", "profile": {"firstName", "lastName", "title", "email",
// "address", "phone"}} (insertBefore takes the same shape). The id is
// required; for an existing user the fields left out (or null) keep their
// values; a new VPP user defaults to status "Registered", a new Veeam user
// to status "Enabled" and role "CompanyLocationUser". Values are stored as
// given, in any case, so that odd enum values can be served on purpose. The
// answer is the stored user. A VPP change counts as a modification for
// incremental listings.
//
// POST /admin/case-flip changes the case of the first letter of every Veeam
// user's role and status (companyOwner ↔ CompanyOwner, Enabled ↔ enabled),
// which rollcall must not report as a change; it answers {"flipped": n}.
//
// POST /admin/expire-tokens invalidates every access token issued at
// /api/v3/token, as expiry or another login would (refresh tokens stay
// valid; the static API key is not affected); it answers {"expired": true}.
//
// GET /admin/state answers
//
//	{"vpp":   {"users": 9, "requests": 14},
//	 "veeam": {"users": 8, "requests": 6, "tokenRequests": {"password": 1, "refresh_token": 0}}}
//
// where requests counts the directory requests each fake received,
// faulted and refused ones included.
//
// Examples:
//
//	curl -d '{"api":"vpp","errorNumber":9646,"times":3}' localhost:8080/admin/faults
//	curl -d '{"api":"veeam","status":429,"retryAfter":5}' localhost:8080/admin/faults
//	curl -X DELETE localhost:8080/admin/users/vpp/101

package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
)

// AdminPath is where the admin API is mounted.
const AdminPath = "/admin/"

const (
	adminBodyLimit = 1 << 20
	maxFaultDelay  = 10 * time.Minute
	// Defaults of a user created through the admin API.
	defaultVeeamRole   = "CompanyLocationUser"
	defaultVeeamStatus = "Enabled"
)

// adminHandler serves the admin API described in the package comment.
func (s *Simulator) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/faults", only(http.MethodPost, s.adminFault))
	mux.HandleFunc("/admin/expire-tokens", only(http.MethodPost, s.adminExpireTokens))
	mux.HandleFunc("/admin/case-flip", only(http.MethodPost, s.adminCaseFlip))
	mux.HandleFunc("/admin/state", only(http.MethodGet, s.adminState))
	mux.HandleFunc("/admin/users/{api}", only(http.MethodPost, s.adminPutUser))
	mux.HandleFunc("/admin/users/{api}/{id}", only(http.MethodDelete, s.adminDeleteUser))
	mux.HandleFunc(AdminPath, func(w http.ResponseWriter, r *http.Request) {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf("no admin endpoint %s %s; see the simulator package documentation", r.Method, r.URL.Path))
	})
	return mux
}

// only restricts h to one method, answering others with a JSON 405.
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeAdminError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", r.URL.Path, method, r.Method))
			return
		}
		h(w, r)
	}
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeAdminError(w http.ResponseWriter, status int, msg string) {
	writeAdminJSON(w, status, map[string]string{"error": msg})
}

// badRequest is an input error, answered with 400 and its text.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func bad(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// readBody reads the request body within the admin limit.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, adminBodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, bad("request body is larger than %d bytes", adminBodyLimit)
		}
		return nil, bad("reading the request body: %v", err)
	}
	return body, nil
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields and trailing data, with errors that name the field.
func decodeStrict(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return bad("request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return bad("field %s: got JSON %s, want %s", te.Field, te.Value, kindName(te.Type.String()))
		case errors.As(err, &te):
			return bad("got JSON %s, want an object", te.Value)
		case errors.As(err, &se):
			return bad("malformed JSON at byte %d: %v", se.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return bad("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return bad("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("unexpected data after the JSON object")
	}
	return nil
}

func kindName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	}
	return "an object"
}

// apiOf reads the "api" field of a fault body.
func apiOf(body []byte) (string, error) {
	var fields map[string]json.RawMessage
	if err := decodeStrict(body, &fields); err != nil {
		return "", err
	}
	raw, ok := fields["api"]
	if !ok || string(raw) == "null" {
		return "", bad(`field api is required: "vpp", "vpp2" or "veeam"`)
	}
	var api string
	if err := json.Unmarshal(raw, &api); err != nil {
		return "", bad(`field api must be a string: "vpp", "vpp2" or "veeam"`)
	}
	return api, nil
}

// --- faults ---

// vppFaultJSON is vpptest.Fault as the admin API spells it.
type vppFaultJSON struct {
	API          string          `json:"api"`
	Batch        int             `json:"batch"`
	Times        int             `json:"times"`
	HTTPStatus   int             `json:"httpStatus,omitempty"`
	RetryAfter   json.RawMessage `json:"retryAfter,omitempty"`
	ErrorNumber  int             `json:"errorNumber,omitempty"`
	ErrorMessage string          `json:"errorMessage,omitempty"`
	Truncate     bool            `json:"truncate,omitempty"`
	NoTokens     bool            `json:"noTokens,omitempty"`
	EmptyBatch   int             `json:"emptyBatch,omitempty"`
	DelayMs      int64           `json:"delayMs,omitempty"`
}

// vpp2FaultJSON is vpp2test.Fault as the admin API spells it.
type vpp2FaultJSON struct {
	API           string          `json:"api"`
	Page          int             `json:"page"`
	Times         int             `json:"times"`
	Lookup        bool            `json:"lookup,omitempty"`
	HTTPStatus    int             `json:"httpStatus,omitempty"`
	RetryAfter    json.RawMessage `json:"retryAfter,omitempty"`
	ErrorNumber   int             `json:"errorNumber,omitempty"`
	ErrorMessage  string          `json:"errorMessage,omitempty"`
	OKStatus      bool            `json:"okStatus,omitempty"`
	Truncate      bool            `json:"truncate,omitempty"`
	ChangeVersion bool            `json:"changeVersion,omitempty"`
	DelayMs       int64           `json:"delayMs,omitempty"`
}

// veeamFaultJSON is veeamtest.Fault as the admin API spells it.
type veeamFaultJSON struct {
	API              string          `json:"api"`
	Page             int             `json:"page"`
	Times            int             `json:"times"`
	Status           int             `json:"status,omitempty"`
	RetryAfter       int             `json:"retryAfter,omitempty"`
	RetryAfterHeader json.RawMessage `json:"retryAfterHeader,omitempty"`
	Message          string          `json:"message,omitempty"`
	Truncate         bool            `json:"truncate,omitempty"`
	DelayMs          int64           `json:"delayMs,omitempty"`
	WrongOffset      bool            `json:"wrongOffset,omitempty"`
	InsertBefore     *veeamUserJSON  `json:"insertBefore,omitempty"`
}

func (s *Simulator) adminFault(w http.ResponseWriter, r *http.Request) {
	echo, err := s.injectFault(w, r)
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeAdminJSON(w, http.StatusAccepted, map[string]any{"queued": echo})
}

func (s *Simulator) injectFault(w http.ResponseWriter, r *http.Request) (any, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	api, err := apiOf(body)
	if err != nil {
		return nil, err
	}
	switch api {
	case "vpp":
		var in vppFaultJSON
		if err := decodeStrict(body, &in); err != nil {
			return nil, err
		}
		f, err := in.fault()
		if err != nil {
			return nil, err
		}
		s.VPP.InjectFault(f)
		in.Times = f.Times
		return in, nil
	case "vpp2":
		var in vpp2FaultJSON
		if err := decodeStrict(body, &in); err != nil {
			return nil, err
		}
		f, err := in.fault()
		if err != nil {
			return nil, err
		}
		s.VPP2.InjectFault(f)
		in.Times = f.Times
		return in, nil
	case "veeam":
		var in veeamFaultJSON
		if err := decodeStrict(body, &in); err != nil {
			return nil, err
		}
		f, err := in.fault()
		if err != nil {
			return nil, err
		}
		s.Veeam.InjectFault(f)
		in.Times = f.Times
		return in, nil
	}
	return nil, bad(`field api: unknown API %q; want "vpp", "vpp2" or "veeam"`, api)
}

// commonFault checks the fields both fakes share.
func commonFault(where string, index, times int, delayMs int64) (time.Duration, error) {
	switch {
	case index < 0:
		return 0, bad("field %s must be 0 (the next request) or a 1-based index, got %d", where, index)
	case times < 0:
		return 0, bad("field times must be positive (absent = 1), got %d", times)
	case delayMs < 0 || time.Duration(delayMs)*time.Millisecond > maxFaultDelay:
		return 0, bad("field delayMs must be between 0 and %d, got %d", maxFaultDelay.Milliseconds(), delayMs)
	}
	return time.Duration(delayMs) * time.Millisecond, nil
}

func (in vppFaultJSON) fault() (vpptest.Fault, error) {
	delay, err := commonFault("batch", in.Batch, in.Times, in.DelayMs)
	if err != nil {
		return vpptest.Fault{}, err
	}
	retryAfter, err := retryAfterValue("retryAfter", in.RetryAfter)
	if err != nil {
		return vpptest.Fault{}, err
	}
	switch {
	case in.HTTPStatus != 0 && (in.HTTPStatus < 300 || in.HTTPStatus > 599):
		return vpptest.Fault{}, bad("field httpStatus must be between 300 and 599, got %d", in.HTTPStatus)
	case in.ErrorNumber < 0:
		return vpptest.Fault{}, bad("field errorNumber must be positive, got %d", in.ErrorNumber)
	case in.HTTPStatus != 0 && in.ErrorNumber != 0:
		return vpptest.Fault{}, bad("set httpStatus or errorNumber, not both: Apple sends error numbers with HTTP 200")
	case retryAfter != "" && in.HTTPStatus == 0:
		return vpptest.Fault{}, bad("field retryAfter needs httpStatus (it is sent as the Retry-After header of that answer)")
	case in.ErrorMessage != "" && in.ErrorNumber == 0:
		return vpptest.Fault{}, bad("field errorMessage needs errorNumber")
	case in.NoTokens && (in.HTTPStatus != 0 || in.ErrorNumber != 0):
		return vpptest.Fault{}, bad("field noTokens applies to a batch that is served, not to an error")
	case in.EmptyBatch < 0:
		return vpptest.Fault{}, bad("field emptyBatch must be a 1-based batch position, got %d", in.EmptyBatch)
	case in.HTTPStatus == 0 && in.ErrorNumber == 0 && !in.Truncate && !in.NoTokens && in.EmptyBatch == 0 && delay == 0:
		return vpptest.Fault{}, bad("the fault does nothing: set httpStatus, errorNumber, truncate, noTokens, emptyBatch or delayMs")
	}
	return vpptest.Fault{
		Batch: in.Batch, Times: max(in.Times, 1),
		HTTPStatus: in.HTTPStatus, RetryAfter: retryAfter,
		ErrorNumber: in.ErrorNumber, ErrorMessage: in.ErrorMessage,
		Truncate: in.Truncate, NoTokens: in.NoTokens, EmptyBatch: in.EmptyBatch, Delay: delay,
	}, nil
}

func (in vpp2FaultJSON) fault() (vpp2test.Fault, error) {
	delay, err := commonFault("page", in.Page, in.Times, in.DelayMs)
	if err != nil {
		return vpp2test.Fault{}, err
	}
	retryAfter, err := retryAfterValue("retryAfter", in.RetryAfter)
	if err != nil {
		return vpp2test.Fault{}, err
	}
	switch {
	case in.HTTPStatus != 0 && (in.HTTPStatus < 300 || in.HTTPStatus > 599):
		return vpp2test.Fault{}, bad("field httpStatus must be between 300 and 599, got %d", in.HTTPStatus)
	case in.ErrorNumber < 0:
		return vpp2test.Fault{}, bad("field errorNumber must be positive, got %d", in.ErrorNumber)
	case in.OKStatus && (in.ErrorNumber == 0 || in.HTTPStatus != 0):
		return vpp2test.Fault{}, bad("field okStatus sends errorNumber's body with HTTP 200: it needs errorNumber and no httpStatus")
	case in.ErrorMessage != "" && in.ErrorNumber == 0:
		return vpp2test.Fault{}, bad("field errorMessage needs errorNumber")
	case in.HTTPStatus == 0 && in.ErrorNumber == 0 && !in.Truncate && !in.ChangeVersion && delay == 0:
		return vpp2test.Fault{}, bad("the fault does nothing: set httpStatus, errorNumber, truncate, changeVersion or delayMs")
	}
	return vpp2test.Fault{
		Page: in.Page, Times: max(in.Times, 1), Lookup: in.Lookup,
		HTTPStatus: in.HTTPStatus, RetryAfter: retryAfter,
		ErrorNumber: in.ErrorNumber, ErrorMessage: in.ErrorMessage, OKStatus: in.OKStatus,
		Truncate: in.Truncate, ChangeVersion: in.ChangeVersion, Delay: delay,
	}, nil
}

func (in veeamFaultJSON) fault() (veeamtest.Fault, error) {
	delay, err := commonFault("page", in.Page, in.Times, in.DelayMs)
	if err != nil {
		return veeamtest.Fault{}, err
	}
	header, err := retryAfterValue("retryAfterHeader", in.RetryAfterHeader)
	if err != nil {
		return veeamtest.Fault{}, err
	}
	switch {
	case in.Status != 0 && (in.Status < 400 || in.Status > 599):
		return veeamtest.Fault{}, bad("field status must be between 400 and 599 (Veeam sends every server error as 520), got %d", in.Status)
	case in.RetryAfter < 0:
		return veeamtest.Fault{}, bad("field retryAfter must be a non-negative number of seconds, got %d", in.RetryAfter)
	case in.Status == 0 && (in.RetryAfter != 0 || header != "" || in.Message != ""):
		return veeamtest.Fault{}, bad("fields retryAfter, retryAfterHeader and message need status")
	case in.Status != 0 && (in.Truncate || in.WrongOffset):
		return veeamtest.Fault{}, bad("fields truncate and wrongOffset apply to a page that is served, not to an error status")
	case in.Status == 0 && !in.Truncate && !in.WrongOffset && in.InsertBefore == nil && delay == 0:
		return veeamtest.Fault{}, bad("the fault does nothing: set status, truncate, wrongOffset, insertBefore or delayMs")
	}
	f := veeamtest.Fault{
		Page: in.Page, Times: max(in.Times, 1),
		Status: in.Status, RetryAfter: in.RetryAfter, RetryAfterHeader: header, Message: in.Message,
		Truncate: in.Truncate, Delay: delay, WrongOffset: in.WrongOffset,
	}
	if in.InsertBefore != nil {
		u, err := in.InsertBefore.apply(nil, "insertBefore.")
		if err != nil {
			return veeamtest.Fault{}, err
		}
		f.InsertBefore = &u
	}
	return f, nil
}

// retryAfterValue accepts a Retry-After value as a JSON number of seconds or
// a string holding seconds or an HTTP date.
func retryAfterValue(field string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", bad("field %s: %v", field, err)
	}
	var s string
	switch v := v.(type) {
	case float64:
		if v < 0 || v != float64(int64(v)) {
			return "", bad("field %s must be a whole number of seconds ≥ 0, got %v", field, v)
		}
		return strconv.FormatInt(int64(v), 10), nil
	case string:
		s = strings.TrimSpace(v)
	default:
		return "", bad("field %s must be seconds or an HTTP date", field)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return s, nil
	}
	if _, err := http.ParseTime(s); err == nil {
		return s, nil
	}
	return "", bad("field %s must be seconds or an HTTP date (e.g. %q), got %q", field, time.Now().UTC().Add(time.Minute).Format(http.TimeFormat), s)
}

// --- users ---

// vppUserJSON is a VPP user as the admin API takes it; nil = unchanged.
type vppUserJSON struct {
	UserID          *int64  `json:"userId"`
	Email           *string `json:"email"`
	ClientUserIDStr *string `json:"clientUserIdStr"`
	Status          *string `json:"status"`
	ItsIDHash       *string `json:"itsIdHash"`
	InviteCode      *string `json:"inviteCode"`
	InviteURL       *string `json:"inviteUrl"`
}

// vppUserOut is a stored VPP user as the admin API answers it.
type vppUserOut struct {
	UserID          int64  `json:"userId"`
	Email           string `json:"email,omitempty"`
	ClientUserIDStr string `json:"clientUserIdStr,omitempty"`
	Status          string `json:"status"`
	ItsIDHash       string `json:"itsIdHash,omitempty"`
	InviteCode      string `json:"inviteCode,omitempty"`
	InviteURL       string `json:"inviteUrl,omitempty"`
}

func (in vppUserJSON) apply(old *vpptest.User) (vpptest.User, error) {
	if in.UserID == nil || *in.UserID <= 0 {
		return vpptest.User{}, bad("field userId is required and must be a positive number")
	}
	u := vpptest.User{UserID: *in.UserID, Status: vpptest.StatusRegistered}
	if old != nil {
		u = *old
	}
	set := func(dst *string, src *string, field string) error {
		if src == nil {
			return nil
		}
		if !utf8.ValidString(*src) {
			return bad("field %s is not valid UTF-8", field)
		}
		*dst = *src
		return nil
	}
	for _, f := range []struct {
		dst   *string
		src   *string
		field string
	}{
		{&u.Email, in.Email, "email"}, {&u.ClientUserIDStr, in.ClientUserIDStr, "clientUserIdStr"},
		{&u.Status, in.Status, "status"}, {&u.ItsIDHash, in.ItsIDHash, "itsIdHash"},
		{&u.InviteCode, in.InviteCode, "inviteCode"}, {&u.InviteURL, in.InviteURL, "inviteUrl"},
	} {
		if err := set(f.dst, f.src, f.field); err != nil {
			return vpptest.User{}, err
		}
	}
	if strings.TrimSpace(u.Status) == "" {
		return vpptest.User{}, bad("field status must not be empty")
	}
	return u, nil
}

type veeamProfileJSON struct {
	FirstName *string `json:"firstName"`
	LastName  *string `json:"lastName"`
	Title     *string `json:"title"`
	Email     *string `json:"email"`
	Address   *string `json:"address"`
	Phone     *string `json:"phone"`
}

// veeamUserJSON is a Veeam user as the admin API takes it; nil = unchanged.
type veeamUserJSON struct {
	InstanceUID     *string           `json:"instanceUid"`
	OrganizationUID *string           `json:"organizationUid"`
	UserName        *string           `json:"userName"`
	Role            *string           `json:"role"`
	Status          *string           `json:"status"`
	MFAPolicyStatus *string           `json:"mfaPolicyStatus"`
	Profile         *veeamProfileJSON `json:"profile"`
}

// veeamUserOut is a stored Veeam user as the admin API answers it.
type veeamUserOut struct {
	InstanceUID     string           `json:"instanceUid"`
	OrganizationUID string           `json:"organizationUid,omitempty"`
	UserName        string           `json:"userName,omitempty"`
	Role            string           `json:"role"`
	Status          string           `json:"status"`
	MFAPolicyStatus string           `json:"mfaPolicyStatus,omitempty"`
	Profile         veeamProfileJSON `json:"profile"`
}

func veeamOut(u veeamtest.User) veeamUserOut {
	return veeamUserOut{
		InstanceUID: u.InstanceUID, OrganizationUID: u.OrganizationUID, UserName: u.UserName,
		Role: u.Role, Status: u.Status, MFAPolicyStatus: u.MFAPolicyStatus,
		Profile: veeamProfileJSON(u.Profile),
	}
}

// apply merges in over old (nil: a new user with the defaults). prefix
// qualifies field names in errors.
func (in veeamUserJSON) apply(old *veeamtest.User, prefix string) (veeamtest.User, error) {
	if in.InstanceUID == nil || strings.TrimSpace(*in.InstanceUID) == "" {
		return veeamtest.User{}, bad("field %sinstanceUid is required", prefix)
	}
	u := veeamtest.User{InstanceUID: *in.InstanceUID, Role: defaultVeeamRole, Status: defaultVeeamStatus}
	if old != nil {
		u = *old
	}
	strs := []struct {
		dst   *string
		src   *string
		field string
	}{
		{&u.OrganizationUID, in.OrganizationUID, "organizationUid"}, {&u.UserName, in.UserName, "userName"},
		{&u.Role, in.Role, "role"}, {&u.Status, in.Status, "status"}, {&u.MFAPolicyStatus, in.MFAPolicyStatus, "mfaPolicyStatus"},
	}
	for _, f := range strs {
		if f.src == nil {
			continue
		}
		if !utf8.ValidString(*f.src) {
			return veeamtest.User{}, bad("field %s%s is not valid UTF-8", prefix, f.field)
		}
		*f.dst = *f.src
	}
	if p := in.Profile; p != nil {
		ptrs := []struct {
			dst   **string
			src   *string
			field string
		}{
			{&u.Profile.FirstName, p.FirstName, "firstName"}, {&u.Profile.LastName, p.LastName, "lastName"},
			{&u.Profile.Title, p.Title, "title"}, {&u.Profile.Email, p.Email, "email"},
			{&u.Profile.Address, p.Address, "address"}, {&u.Profile.Phone, p.Phone, "phone"},
		}
		for _, f := range ptrs {
			if f.src == nil {
				continue
			}
			if !utf8.ValidString(*f.src) {
				return veeamtest.User{}, bad("field %sprofile.%s is not valid UTF-8", prefix, f.field)
			}
			v := *f.src
			*f.dst = &v
		}
	}
	return u, nil
}

func (s *Simulator) adminPutUser(w http.ResponseWriter, r *http.Request) {
	api := r.PathValue("api")
	if api != "vpp" && api != "veeam" {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf(`unknown API %q in the path; want /admin/users/vpp or /admin/users/veeam`, api))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The simulator's lock keeps a concurrent churn step from writing back
	// a stale copy of the user.
	s.mu.Lock()
	defer s.mu.Unlock()
	var out any
	created := false
	switch api {
	case "vpp":
		var in vppUserJSON
		if err := decodeStrict(body, &in); err != nil {
			writeAdminError(w, http.StatusBadRequest, err.Error())
			return
		}
		var old *vpptest.User
		if in.UserID != nil {
			if u, ok := s.VPP.Get(*in.UserID); ok {
				old = &u
			}
		}
		u, err := in.apply(old)
		if err != nil {
			writeAdminError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.VPP.Put(u)
		created, out = old == nil, vppUserOut(u)
	case "veeam":
		var in veeamUserJSON
		if err := decodeStrict(body, &in); err != nil {
			writeAdminError(w, http.StatusBadRequest, err.Error())
			return
		}
		var old *veeamtest.User
		if in.InstanceUID != nil {
			if u, ok := s.Veeam.Get(*in.InstanceUID); ok {
				old = &u
			}
		}
		u, err := in.apply(old, "")
		if err != nil {
			writeAdminError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.Veeam.Put(u)
		created, out = old == nil, veeamOut(u)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeAdminJSON(w, status, out)
}

func (s *Simulator) adminDeleteUser(w http.ResponseWriter, r *http.Request) {
	api, id := r.PathValue("api"), r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch api {
	case "vpp":
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n <= 0 {
			writeAdminError(w, http.StatusBadRequest, fmt.Sprintf("VPP user id %q is not a positive userId", id))
			return
		}
		if _, ok := s.VPP.Get(n); !ok {
			writeAdminError(w, http.StatusNotFound, fmt.Sprintf("no VPP user with userId %d", n))
			return
		}
		s.VPP.Remove(n)
	case "veeam":
		if _, ok := s.Veeam.Get(id); !ok {
			writeAdminError(w, http.StatusNotFound, fmt.Sprintf("no Veeam user with instanceUid %q", id))
			return
		}
		s.Veeam.Remove(id)
	default:
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf(`unknown API %q in the path; want /admin/users/vpp/{id} or /admin/users/veeam/{id}`, api))
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"removed": id, "api": api})
}

// --- tokens, case, state ---

func (s *Simulator) adminExpireTokens(w http.ResponseWriter, _ *http.Request) {
	s.Veeam.ExpireTokens()
	writeAdminJSON(w, http.StatusOK, map[string]bool{"expired": true})
}

// flipCase swaps the case of the first letter: companyOwner ↔ CompanyOwner.
func flipCase(v string) string {
	r, n := utf8.DecodeRuneInString(v)
	if n == 0 || r == utf8.RuneError {
		return v
	}
	if unicode.IsUpper(r) {
		r = unicode.ToLower(r)
	} else {
		r = unicode.ToUpper(r)
	}
	return string(r) + v[n:]
}

func (s *Simulator) adminCaseFlip(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	users := s.Veeam.Users()
	for _, u := range users {
		u.Role, u.Status = flipCase(u.Role), flipCase(u.Status)
		s.Veeam.Put(u)
	}
	writeAdminJSON(w, http.StatusOK, map[string]int{"flipped": len(users)})
}

// AdminState is the answer of GET /admin/state.
type AdminState struct {
	VPP struct {
		Users    int `json:"users"`
		Requests int `json:"requests"`
	} `json:"vpp"`
	Veeam struct {
		Users         int            `json:"users"`
		Requests      int            `json:"requests"`
		TokenRequests map[string]int `json:"tokenRequests"`
	} `json:"veeam"`
}

func (s *Simulator) adminState(w http.ResponseWriter, _ *http.Request) {
	var st AdminState
	st.VPP.Users, st.VPP.Requests = len(s.VPP.Users()), s.VPP.Requests()
	st.Veeam.Users, st.Veeam.Requests = len(s.Veeam.Users()), s.Veeam.Requests()
	st.Veeam.TokenRequests = map[string]int{}
	for _, g := range []string{"password", "refresh_token"} {
		st.Veeam.TokenRequests[g] = s.Veeam.TokenRequests(g)
	}
	writeAdminJSON(w, http.StatusOK, st)
}
