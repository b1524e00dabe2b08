// Package vpp2test is a hand-written fake of Apple's App and Book
// Management API v2 Get Users (GET …/users) and service configuration
// (GET …/service/config), shared by the vpp2 client's tests, the
// simulator and the end-to-end tests.
//
// It serves the directory of a vpptest.Server (the legacy fake), so that
// one directory is served on both APIs at once, as Apple serves one
// location: each legacy user is a v2 entry keyed by its clientUserIdStr
// (users without one are not served), with its idHash, inviteCode and
// status; legacy users that share a clientUserIdStr are one v2 user's
// several entries (retired duplicates and a re-created active one).
// Deleted users are served too, as v2's legacy state "Deleted".
//
// What rollcall depends on is kept faithful: pageIndex/nextPageIndex
// paging over the directory as it was at the listing's page 0 (a
// directory changed by a SetBeforePage hook, or a ChangeVersion fault,
// changes the versionId of the next page; a change made otherwise during a
// walk shows in the next listing, as for a versionId Apple keeps serving),
// the directory's version as versionId, sinceVersionId listings of the
// entries modified since, clientUserId lookups (live for the entries the
// directory had when the last listing started, and for their changes and
// removals since), ErrorResponse bodies with Apple's numbers and
// statuses, and Bearer authentication. Faults are injectable per page:
// HTTP errors with Retry-After, error numbers (with their HTTP status or
// with 200), truncated or rewritten bodies, delays, a versionId that
// changes, empty pages that are not the end, listings that never end.
package vpp2test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// DefaultPageSize is the number of entries per page unless SetPageSize says
// otherwise.
const DefaultPageSize = 100

// Apple's error numbers the fake produces itself.
const (
	errLoginRequired    = 9601
	errInvalidArgument  = 9602
	errInvalidPageIndex = 9650
	errInvalidVersionID = 9721
	errInvalidAuth      = 9722
)

// Fault is a misbehaviour injected into upcoming requests.
type Fault struct {
	// Page is the 1-based page of a walk (pageIndex+1) the fault applies
	// to; 0 means the next request, whatever it is.
	Page int
	// Lookup aims the fault at clientUserId lookups, ServiceConfig at the
	// service configuration; neither: listings.
	Lookup        bool
	ServiceConfig bool
	// Times is how many requests the fault hits; 0 means 1.
	Times int
	// HTTPStatus answers with this status (and ErrorNumber's body, if set).
	HTTPStatus int
	RetryAfter string // sent as Retry-After
	// ErrorNumber answers an ErrorResponse, with HTTPStatus or the status
	// Apple sends with the number, or 200 with OKStatus.
	ErrorNumber  int
	ErrorMessage string
	OKStatus     bool
	Truncate     bool                     // cut the body in half
	Delay        time.Duration            // hold the answer back (until the request ends)
	Rewrite      func(body []byte) []byte // replace a page's JSON body
	// ChangeVersion moves the directory's versionId before the page is
	// answered, as a change to the location would.
	ChangeVersion bool
}

// Server is the fake. It is safe for concurrent use.
type Server struct {
	dir    *vpptest.Server
	sToken string

	mu             sync.Mutex
	pageSize       int
	bump           uint64 // added to the directory's version (ChangeVersion)
	rps            int
	requests       int
	lookupRequests int
	configRequests int
	faults         []Fault
	beforePage     func(page int)
	emptyAt        int  // 1-based page served empty (a shifted page), 0: none
	endless        bool // empty pages with a nextPageIndex for ever
	lists          map[string]*listing
	byKey          map[string][]int64 // clientUserId → legacy userIds, for lookups; nil: to be built
	byKeyVersion   uint64
}

// NewServer returns a fake that accepts sToken and serves dir's users; a
// nil dir is a new empty legacy directory.
func NewServer(sToken string, dir *vpptest.Server) *Server {
	if dir == nil {
		dir = vpptest.NewServer(sToken)
	}
	return &Server{dir: dir, sToken: sToken, pageSize: DefaultPageSize, rps: 15, lists: map[string]*listing{}}
}

// Directory is the legacy fake whose users the server serves.
func (s *Server) Directory() *vpptest.Server { return s.dir }

// SetPageSize sets the entries per page (minimum 1).
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = max(n, 1)
}

// SetMaxRequestPerSecond sets limits.maxRequestPerSecond in the service
// configuration (default 15, Apple's example).
func (s *Server) SetMaxRequestPerSecond(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rps = n
}

// SetEmptyPage makes every later listing carry an extra page with zero
// entries (and a nextPageIndex) at 1-based position n, counted in
// totalPages; 0 removes it. Zero entries are not the end of a listing.
func (s *Server) SetEmptyPage(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emptyAt = n
}

// SetEndless makes every later listing go on for ever with empty pages,
// each announcing one page more in totalPages than the last.
func (s *Server) SetEndless(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endless = on
}

// SetBeforePage has f called, outside the lock, before each listing page
// is answered, with its 1-based page; it may change the directory.
func (s *Server) SetBeforePage(f func(page int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforePage = f
}

// InjectFault queues f; each request takes the first matching fault.
func (s *Server) InjectFault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// Requests counts listing requests (lookups and configuration excepted).
func (s *Server) Requests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.requests }

// LookupRequests counts clientUserId lookups.
func (s *Server) LookupRequests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.lookupRequests }

// ConfigRequests counts service configuration requests.
func (s *Server) ConfigRequests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.configRequests }

// VersionID is the versionId the directory has now.
func (s *Server) VersionID() string {
	_, v := s.dir.Since(^uint64(0))
	s.mu.Lock()
	defer s.mu.Unlock()
	return versionID(v, s.bump)
}

// versionID spells the directory's version v, and the bumps of
// ChangeVersion, as an opaque versionId.
func versionID(v, bump uint64) string { return fmt.Sprintf("v2-%016x-%x", v, bump) }

// parseVersionID reads the directory's version out of a versionId.
func parseVersionID(s string) (uint64, bool) {
	rest, ok := strings.CutPrefix(s, "v2-")
	hex, _, ok2 := strings.Cut(rest, "-")
	if !ok || !ok2 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex, 16, 64)
	return v, err == nil
}

type kind int

const (
	listKind kind = iota
	lookupKind
	configKind
)

func (s *Server) takeFault(page int, k kind) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		fk := listKind
		switch {
		case f.Lookup:
			fk = lookupKind
		case f.ServiceConfig:
			fk = configKind
		}
		if fk != k || (f.Page != 0 && f.Page != page) {
			continue
		}
		s.faults[i].Times--
		if s.faults[i].Times <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return f, true
	}
	return Fault{}, false
}

// ServeHTTP answers GET …/users and GET …/service/config under any base
// path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method != http.MethodGet:
		writeError(w, http.StatusMethodNotAllowed, 9726, "Method not allowed.")
	case strings.HasSuffix(r.URL.Path, "/service/config"):
		s.serveConfig(w, r)
	case strings.HasSuffix(r.URL.Path, "/users"):
		s.serveUsers(w, r)
	default:
		http.NotFound(w, r)
	}
}

// statusOf is the HTTP status Apple sends with an error number.
func statusOf(number int) int {
	switch number {
	case 9601, 9621, 9622, 9625, 9722:
		return http.StatusUnauthorized
	case 9637, 9647:
		return http.StatusForbidden
	case 9646:
		return http.StatusTooManyRequests
	case 9603:
		return http.StatusInternalServerError
	case 9729:
		return http.StatusServiceUnavailable
	case 9634:
		return http.StatusGone
	}
	return http.StatusBadRequest
}

var messages = map[int]string{
	9601: "Login required.",
	9602: "Invalid argument.",
	9603: "Internal error.",
	9621: "The token has expired. You need to generate a new token online using your organization's account at https://business.apple.com or https://school.apple.com.",
	9625: "The server has revoked the sToken.",
	9646: "There are too many recent requests. Try again momentarily.",
	9650: "Invalid page index. It must be greater than 0.",
	9721: "Invalid version ID.",
	9722: "Invalid authorization header.",
}

func writeError(w http.ResponseWriter, status, number int, message string) {
	if message == "" {
		message = messages[number]
	}
	b, _ := json.Marshal(map[string]any{"errorNumber": number, "errorMessage": message})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// applyFault answers r as f says, or returns false when f leaves the
// answer to the caller (Truncate, Rewrite, ChangeVersion).
func applyFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	switch {
	case f.ErrorNumber != 0:
		status := f.HTTPStatus
		if status == 0 {
			status = statusOf(f.ErrorNumber)
		}
		if f.OKStatus {
			status = http.StatusOK
		}
		writeError(w, status, f.ErrorNumber, f.ErrorMessage)
		return true
	case f.HTTPStatus != 0:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(f.HTTPStatus)
		_, _ = w.Write([]byte(http.StatusText(f.HTTPStatus)))
		return true
	}
	return false
}

func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.configRequests++
	rps := s.rps
	s.mu.Unlock()
	if f, ok := s.takeFault(0, configKind); ok && applyFault(w, r, f) {
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	prefix := scheme + "://" + r.Host + strings.TrimSuffix(r.URL.Path, "/service/config")
	body := map[string]any{
		"urls": map[string]string{
			"getUsers":              prefix + "/users",
			"getUser":               prefix + "/users",
			"clientConfig":          prefix + "/client/config",
			"invitationEmail":       "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?cc=us&inviteCode=%inviteCode%&mt=8",
			"getAssets":             prefix + "/assets",
			"getAssignments":        prefix + "/assignments",
			"contentMetadataLookup": "https://uclient-api.itunes.apple.com/WebObjects/MZStorePlatform.woa/wa/lookup?version=2&id=%25s",
		},
		"limits": map[string]int{"maxRequestPerSecond": rps, "maxBatchAssociateLicenseCount": 1000},
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
