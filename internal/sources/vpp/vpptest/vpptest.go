// Package vpptest is a hand-written fake of Apple's legacy VPP
// getVPPUsersSrv and getVPPUserSrv endpoints, shared by the vpp client's
// tests, the simulator and the benchmarks.
//
// It keeps what rollcall depends on faithful: batchToken paging over a
// stable snapshot, a sinceModifiedToken only on the final batch,
// totalBatchCount as a JSON string, status -1 answers with Apple's error
// numbers on HTTP 200, and injectable faults (HTTP errors with Retry-After,
// error numbers, truncated bodies, delays, token-less batches, listings
// that announce no totalBatchCount or totalCount, listings that never end).
//
// getVPPUserSrv (POST …/getVPPUserSrv under any base path, body {"userId",
// "sToken"}) answers one user as Apple's "Get a User" example does, or 9609
// (Registered user not found) for a user the fake does not hold. A user
// with status "Deleted" is left out of listings and reported as such by
// getVPPUserSrv only, as Apple does.
//
// It also serves VPPServiceConfigSrv (POST …/VPPServiceConfigSrv, body {}):
// Apple's service URLs, all pointing at the fake itself, errorCodes[] and
// limits. SetUsersPath moves getVPPUsersSrv so that a test can watch a
// client follow Apple's 9617 (URL moved) through the service configuration.
//
// SetBeforeBatch lets a test or a simulation change the directory between
// the batches of one listing.
//
// It is not a complete model of Apple's service: overrideIndex is ignored,
// removed users vanish instead of being retired, and getVPPUserSrv looks
// users up by userId only (not by clientUserIdStr) and lists no licenses.
package vpptest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// User statuses as Apple spells them.
const (
	StatusRegistered = "Registered"
	StatusAssociated = "Associated"
	StatusRetired    = "Retired"
	// StatusDeleted is a legacy state that Apple's getVPPUserSrv can
	// report; the fake leaves such users out of listings, as Apple does,
	// and reports them only when looked up.
	StatusDeleted = "Deleted"
)

// Apple's error numbers that the fake itself produces.
const (
	errMissingArgument    = 9600
	errInvalidArgument    = 9602
	errLoginRequired      = 9601
	errUserNotFound       = 9609
	errURLMoved           = 9617
	errInvalidToken       = 9622
	errBatchUnrecoverable = 9633
)

const (
	usersSuffix  = "/getVPPUsersSrv"
	userSuffix   = "/getVPPUserSrv"
	configSuffix = "/VPPServiceConfigSrv"
)

// DefaultBatchSize is the number of users per batch unless SetBatchSize says
// otherwise.
const DefaultBatchSize = 100

// maxListings bounds the remembered listings so that a long-running
// simulator does not grow without limit; a client holding an evicted
// batchToken gets 9633, as it would from Apple.
const maxListings = 256

// User is one VPP user record.
type User struct {
	UserID          int64
	Email           string
	ClientUserIDStr string
	Status          string // "Registered", "Associated", "Retired" or "Deleted"
	ItsIDHash       string
	InviteCode      string
	InviteURL       string
}

// FixtureUsers returns the four users of Apple's documented example
// response (shared/fixtures/vpp-getVPPUsersSrv-response.json).
func FixtureUsers() []User {
	return []User{
		{UserID: 1, Email: "user1@test.com", ClientUserIDStr: "200006", Status: StatusAssociated, ItsIDHash: "C2Wwd8LcIaE2v6f2/mvu82Gs/Lc="},
		{UserID: 2, Email: "user2@test.com", ClientUserIDStr: "200007", Status: StatusAssociated, ItsIDHash: "*leSKk3IaE2vk2KLmv2k3/200D3="},
		{UserID: 3, Email: "user3@test.com", ClientUserIDStr: "user3@test.com", Status: StatusRegistered,
			InviteCode: "f551b37da07146628e8dcbe0111f0364",
			InviteURL:  "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=f551b37da07146628e8dcbe0111f0364&mt=8"},
		{UserID: 4, Email: "user4@test.com", ClientUserIDStr: "user4@test.com", Status: StatusRegistered,
			InviteCode: "859c5aa3485a48918a5f4f70c5629ec8",
			InviteURL:  "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=859c5aa3485a48918a5f4f70c5629ec8&mt=8"},
	}
}

// Fault is a misbehaviour injected into upcoming requests.
type Fault struct {
	// ServiceConfig aims the fault at VPPServiceConfigSrv requests instead
	// of getVPPUsersSrv ones; Batch, NoTokens and the listing fields below
	// do not apply then.
	ServiceConfig bool
	// Lookup aims the fault at getVPPUserSrv requests instead of
	// getVPPUsersSrv ones, with the same exceptions as ServiceConfig. Set
	// at most one of the two.
	Lookup bool
	// Batch is the 1-based batch index of a listing the fault applies to; 0
	// means the next request, whatever it is.
	Batch int
	// Times is how many requests the fault hits; 0 means 1.
	Times int
	// HTTPStatus answers with this status and a short body.
	HTTPStatus int
	// RetryAfter is sent as the Retry-After header with HTTPStatus.
	RetryAfter string
	// ErrorNumber answers HTTP 200 {"status":-1,"errorNumber":N,...}.
	ErrorNumber  int
	ErrorMessage string // default: Apple's message for ErrorNumber
	// Truncate cuts the JSON body in half.
	Truncate bool
	// NoTokens serves the batch without batchToken and sinceModifiedToken,
	// which Apple occasionally does; a client must retry the same request.
	NoTokens bool
	// EmptyBatch makes the listing that starts with this request carry an
	// extra batch with zero users at this 1-based position (counted in
	// totalBatchCount), as Apple's listings sometimes do: a client that
	// takes an empty batch for the end loses every later user.
	EmptyBatch int
	// ZeroTotalBatchCount makes the listing that starts with this request
	// send totalBatchCount "0" on every batch, as Apple's own example does.
	ZeroTotalBatchCount bool
	// NoTotalCount leaves totalCount out of the first batch of the listing
	// that starts with this request.
	NoTotalCount bool
	// Endless makes the listing that starts with this request never end:
	// after its users it serves empty batches, each with a fresh batchToken
	// and all with totalBatchCount "0", and never a sinceModifiedToken. A
	// client has to stop on its own.
	Endless bool
	// Delay holds the answer back (until the request's context ends).
	Delay time.Duration
	// Rewrite, for a getVPPUsersSrv batch the fake serves (status 0),
	// replaces the JSON body with what it returns, before Truncate: a test
	// can give a field the wrong type.
	Rewrite func(body []byte) []byte
}

type record struct {
	user User
	seq  uint64 // modification sequence number of the last Put
}

// listing is the frozen result of the first request of a batched listing.
type listing struct {
	users   []User
	seq     uint64 // modification sequence at snapshot time, for the final sinceModifiedToken
	retired bool   // includeRetired flag baked into the final sinceModifiedToken
	shape
}

// shape is how a listing misbehaves, fixed by the fault its first request
// took.
type shape struct {
	emptyAt   int  // 1-based batch served empty, 0 for none
	zeroTotal bool // totalBatchCount "0" on every batch
	noCount   bool // no totalCount on the first batch
	endless   bool // never a final batch
}

func (f Fault) shape() shape {
	return shape{emptyAt: f.EmptyBatch, zeroTotal: f.ZeroTotalBatchCount || f.Endless, noCount: f.NoTotalCount, endless: f.Endless}
}

// Server is the fake. It is safe for concurrent use.
type Server struct {
	sToken string

	mu             sync.Mutex
	users          map[int64]record
	seq            uint64
	batchSize      int
	requests       int
	configRequests int
	lookupRequests int
	faults         []Fault
	beforeBatch    func(batch int)
	listings       map[uint64]*listing
	nextList       uint64
	usersPath      string          // "" = any path ending in /getVPPUsersSrv
	movedPaths     map[string]bool // earlier usersPaths, answering 9617
}

// NewServer returns a fake that accepts sToken and holds users.
func NewServer(sToken string, users ...User) *Server {
	s := &Server{
		sToken:     sToken,
		users:      map[int64]record{},
		batchSize:  DefaultBatchSize,
		listings:   map[uint64]*listing{},
		movedPaths: map[string]bool{},
	}
	for _, u := range users {
		s.Put(u)
	}
	return s
}

// Put inserts or replaces the user with u.UserID and marks it modified now,
// so that the next incremental listing returns it.
func (s *Server) Put(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.users[u.UserID] = record{user: u, seq: s.seq}
}

// Remove deletes a user outright. Real VPP retires users instead; deleting
// lets tests exercise removal detection on a full sync. getVPPUserSrv then
// answers 9609 for the user.
func (s *Server) Remove(userID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[userID]; ok {
		// The directory changed: its version (vpp2test's versionId) moves.
		s.seq++
	}
	delete(s.users, userID)
}

// Since returns the users put after version since (0: every user), sorted
// by UserID, Deleted ones included, and the directory's version now. The
// version grows with every Put and Remove; vpp2test serves it as API v2's
// versionId, so that both APIs serve one directory.
func (s *Server) Since(since uint64) ([]User, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked(func(r record) bool { return r.seq > since }), s.seq
}

// Version is the directory's version now (see Since), read in constant
// time: vpp2test checks it at every page to tell whether a listing it holds
// is still the directory's.
func (s *Server) Version() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// Get returns the user with userID.
func (s *Server) Get(userID int64) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.users[userID]
	return r.user, ok
}

// Users returns every user, sorted by UserID, Deleted ones included.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked(func(record) bool { return true })
}

// SetBatchSize sets the number of users per batch (minimum 1) for listings
// that start afterwards.
func (s *Server) SetBatchSize(n int) {
	if n < 1 {
		n = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batchSize = n
}

// Requests reports how many getVPPUsersSrv requests were served, faulted
// ones and 9617 answers at a moved path included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// LookupRequests reports how many getVPPUserSrv requests were served,
// faulted ones included.
func (s *Server) LookupRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupRequests
}

// SetBeforeBatch has f called before each getVPPUsersSrv request at the
// users path is answered (9617 answers at a moved path excepted), with the
// 1-based index of the batch it asks for, or 0 when that is unknown (a
// malformed body or a batchToken the fake cannot read). f runs outside the
// server's lock, so it may change the directory or inject faults; what it
// changes shows in listings that start afterwards, as a listing is frozen
// by its first request. A nil f removes the hook.
func (s *Server) SetBeforeBatch(f func(batch int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforeBatch = f
}

// ConfigRequests reports how many VPPServiceConfigSrv requests were served,
// faulted ones included.
func (s *Server) ConfigRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configRequests
}

// SetUsersPath moves getVPPUsersSrv to the absolute path p (for example
// "/mdm2/getVPPUsersSrv"), as Apple may: from now on only p serves users,
// VPPServiceConfigSrv advertises p as getUsersSrvUrl, and every other path
// ending in /getVPPUsersSrv, as well as every path set before, answers
// 9617 (URL moved). An empty p restores the default (any path ending in
// /getVPPUsersSrv serves users).
func (s *Server) SetUsersPath(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usersPath != "" && s.usersPath != p {
		s.movedPaths[s.usersPath] = true
	}
	s.usersPath = p
	if p == "" {
		clear(s.movedPaths)
	}
	delete(s.movedPaths, p)
}

// route says what a path is: the users endpoint, a moved users endpoint,
// or neither.
func (s *Server) routeLocked(path string) (users, moved bool) {
	if s.usersPath == "" {
		return strings.HasSuffix(path, usersSuffix), false
	}
	if path == s.usersPath {
		return true, false
	}
	return false, s.movedPaths[path] || strings.HasSuffix(path, usersSuffix)
}

// InjectFault queues f. Faults are consumed in the order injected: each
// request takes the first queued fault that matches its batch.
func (s *Server) InjectFault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// ClearFaults drops every fault not yet consumed.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) sortedLocked(keep func(record) bool) []User {
	out := make([]User, 0, len(s.users))
	for _, r := range s.users {
		if keep(r) {
			out = append(out, r.user)
		}
	}
	slices.SortFunc(out, func(a, b User) int {
		switch {
		case a.UserID < b.UserID:
			return -1
		case a.UserID > b.UserID:
			return 1
		}
		return 0
	})
	return out
}

// endpoint is what a fault can be aimed at.
type endpoint int

const (
	usersEndpoint endpoint = iota
	configEndpoint
	lookupEndpoint
)

func (f Fault) endpoint() endpoint {
	switch {
	case f.ServiceConfig:
		return configEndpoint
	case f.Lookup:
		return lookupEndpoint
	}
	return usersEndpoint
}

// takeFaultLocked pops the first fault aimed at e; for getVPPUsersSrv, the
// first that also matches batch (0 = unknown batch).
func (s *Server) takeFaultLocked(batch int, e endpoint) (Fault, bool) {
	for i, f := range s.faults {
		if f.endpoint() != e || (e == usersEndpoint && f.Batch != 0 && f.Batch != batch) {
			continue
		}
		s.faults[i].Times--
		if s.faults[i].Times <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		return f, true
	}
	return Fault{}, false
}

// batchToken and sinceToken are the fake's opaque tokens. Apple's are
// opaque too (a gzip'd plist); clients must not look inside.
type batchToken struct {
	List    uint64 `json:"l"`
	Batch   int    `json:"b"` // 1-based index of the batch this token fetches
	Retired bool   `json:"r"`
}

type sinceToken struct {
	Seq     uint64 `json:"s"`
	Retired bool   `json:"r"`
}

func encodeToken(v any) string {
	b, _ := json.Marshal(v) // plain structs of ints and bools cannot fail
	return base64.StdEncoding.EncodeToString(b)
}

func decodeToken(s string, v any) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

type request struct {
	sToken, batchToken, sinceToken string
	hasSToken                      bool
	includeRetired                 bool
	retiredOnly                    bool
}

// parseRequest reads the request body leniently, as Apple does: numbers and
// booleans may come as strings, null means absent.
func parseRequest(body []byte) (request, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return request{}, false
	}
	var r request
	var ok bool
	if r.sToken, ok = str(m["sToken"]); !ok {
		return r, false
	}
	r.hasSToken = strings.TrimSpace(r.sToken) != ""
	if r.batchToken, ok = str(m["batchToken"]); !ok {
		return r, false
	}
	if r.sinceToken, ok = str(m["sinceModifiedToken"]); !ok {
		return r, false
	}
	if r.includeRetired, ok = flag(m["includeRetired"]); !ok {
		return r, false
	}
	if r.retiredOnly, ok = flag(m["includeRetiredOnly"]); !ok {
		return r, false
	}
	return r, true
}

func str(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func flag(raw json.RawMessage) (bool, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return false, true
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return false, false
	}
	switch v := v.(type) {
	case bool:
		return v, true
	case float64:
		return v != 0, true
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "", "0", "false":
			return false, true
		case "1", "true":
			return true, true
		}
	}
	return false, false
}

var messages = map[int]string{
	9600: "Missing required argument",
	9601: "Login required",
	9602: "Invalid argument",
	9603: "Internal error",
	9609: "Registered user not found",
	9617: "The URL has moved",
	9621: "Token expired",
	9622: "Invalid token",
	9625: "Token revoked",
	9629: "sToken is not applicable to batchToken",
	9633: "Batch data not recoverable",
	9634: "Service removed",
	9644: "Maintenance mode",
	9646: "Too many requests",
}

// ServeHTTP answers POST …/getVPPUsersSrv (or the path SetUsersPath set),
// POST …/getVPPUserSrv and POST …/VPPServiceConfigSrv under any base path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	config := strings.HasSuffix(r.URL.Path, configSuffix)
	lookup := strings.HasSuffix(r.URL.Path, userSuffix)
	s.mu.Lock()
	users, moved := s.routeLocked(r.URL.Path)
	s.mu.Unlock()
	if !config && !lookup && !users && !moved {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case config:
		s.serveConfig(w, r)
	case lookup:
		s.serveLookup(w, r)
	case moved:
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		writeError(w, errURLMoved, messages[errURLMoved], false)
	default:
		s.serveUsers(w, r)
	}
}

// serveUsers answers getVPPUsersSrv.
func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	_, readErr := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20))
	req, parsed := parseRequest(buf.Bytes())

	batch := 1
	var bt batchToken
	if req.batchToken != "" {
		batch = 0
		if decodeToken(req.batchToken, &bt) {
			batch = bt.Batch
		}
	}
	s.mu.Lock()
	hook := s.beforeBatch
	s.mu.Unlock()
	if hook != nil {
		known := batch
		if readErr != nil || !parsed {
			known = 0
		}
		hook(known)
	}

	s.mu.Lock()
	s.requests++
	fault, faulted := s.takeFaultLocked(batch, usersEndpoint)
	s.mu.Unlock()

	if faulted && fault.answer(w, r) {
		return
	}
	if num := s.checkAuth(readErr != nil || !parsed, req); num != 0 {
		writeError(w, num, messages[num], false)
		return
	}

	var sh shape
	if faulted && req.batchToken == "" {
		sh = fault.shape()
	}
	resp, errNum := s.answer(req, bt, batch, sh)
	if errNum != 0 {
		writeError(w, errNum, messages[errNum], faulted && fault.Truncate)
		return
	}
	if faulted && fault.NoTokens {
		resp.BatchToken, resp.SinceModifiedToken = "", ""
	}
	if faulted && fault.Rewrite != nil {
		writeRewritten(w, resp, fault.Rewrite, fault.Truncate)
		return
	}
	writeJSON(w, resp, faulted && fault.Truncate)
}

// checkAuth returns the error number for a body that could not be read or
// an sToken the fake does not accept, 0 when all is well.
func (s *Server) checkAuth(malformed bool, req request) int {
	switch {
	case malformed:
		return errInvalidArgument
	case !req.hasSToken:
		return errLoginRequired
	case req.sToken != s.sToken:
		return errInvalidToken
	}
	return 0
}

// userAnswer is a getVPPUserSrv answer, with Apple's field names.
type userAnswer struct {
	Status   int      `json:"status"`
	UID      string   `json:"uId"`
	Location location `json:"location"`
	User     wireUser `json:"user"`
}

// serveLookup answers getVPPUserSrv: the user asked for by userId, or 9609
// (Registered user not found) when the fake does not hold it.
func (s *Server) serveLookup(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	_, readErr := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20))
	s.mu.Lock()
	s.lookupRequests++
	fault, faulted := s.takeFaultLocked(0, lookupEndpoint)
	s.mu.Unlock()
	if faulted && fault.answer(w, r) {
		return
	}
	truncate := faulted && fault.Truncate
	req, id, hasID, parsed := parseLookup(buf.Bytes())
	if num := s.checkAuth(readErr != nil || !parsed, req); num != 0 {
		writeError(w, num, messages[num], truncate)
		return
	}
	if !hasID {
		// Apple also accepts clientUserIdStr; the fake does not.
		writeError(w, errMissingArgument, messages[errMissingArgument], truncate)
		return
	}
	u, ok := s.Get(id)
	if !ok {
		writeError(w, errUserNotFound, messages[errUserNotFound], truncate)
		return
	}
	writeJSON(w, userAnswer{UID: "100978", Location: location{LocationID: 22222222222, LocationName: "LocationName"}, User: wireUser(u)}, truncate)
}

// parseLookup reads a getVPPUserSrv body leniently: userId may be a number
// or a string holding one.
func parseLookup(body []byte) (req request, id int64, hasID, ok bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return request{}, 0, false, false
	}
	if req.sToken, ok = str(m["sToken"]); !ok {
		return req, 0, false, false
	}
	req.hasSToken = strings.TrimSpace(req.sToken) != ""
	raw := m["userId"]
	if len(raw) == 0 || string(raw) == "null" {
		return req, 0, false, true
	}
	if s, isStr := str(raw); isStr {
		raw = json.RawMessage(s)
	}
	if err := json.Unmarshal(raw, &id); err != nil {
		return req, 0, false, false
	}
	return req, id, true, true
}

// answer applies the delay and, when the fault answers the request itself
// (an HTTP status or an error number), writes that answer and reports true.
func (f Fault) answer(w http.ResponseWriter, r *http.Request) bool {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.HTTPStatus != 0:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		http.Error(w, http.StatusText(f.HTTPStatus), f.HTTPStatus)
		return true
	case f.ErrorNumber != 0:
		msg := f.ErrorMessage
		if msg == "" {
			msg = messages[f.ErrorNumber]
		}
		writeError(w, f.ErrorNumber, msg, f.Truncate)
		return true
	}
	return false
}

type errorCode struct {
	ErrorNumber  int    `json:"errorNumber"`
	ErrorMessage string `json:"errorMessage"`
}

// serviceConfig is the VPPServiceConfigSrv answer, with Apple's field names.
type serviceConfig struct {
	Status                           int         `json:"status"`
	InvitationEmailURL               string      `json:"invitationEmailUrl"`
	RegisterUserSrvURL               string      `json:"registerUserSrvUrl"`
	EditUserSrvURL                   string      `json:"editUserSrvUrl"`
	GetUserSrvURL                    string      `json:"getUserSrvUrl"`
	RetireUserSrvURL                 string      `json:"retireUserSrvUrl"`
	GetUsersSrvURL                   string      `json:"getUsersSrvUrl"`
	GetLicensesSrvURL                string      `json:"getLicensesSrvUrl"`
	GetVPPAssetsSrvURL               string      `json:"getVPPAssetsSrvUrl"`
	ManageVPPLicensesByAdamIDSrvURL  string      `json:"manageVPPLicensesByAdamIdSrvUrl"`
	ClientConfigSrvURL               string      `json:"clientConfigSrvUrl"`
	ContentMetadataLookupURL         string      `json:"contentMetadataLookupUrl"`
	VPPWebsiteURL                    string      `json:"vppWebsiteUrl"`
	MaxBatchAssociateLicenseCount    int         `json:"maxBatchAssociateLicenseCount"`
	MaxBatchDisassociateLicenseCount int         `json:"maxBatchDisassociateLicenseCount"`
	ErrorCodes                       []errorCode `json:"errorCodes"`
}

// serveConfig answers VPPServiceConfigSrv with URLs on the fake's own host:
// the other services beside the config path, getUsersSrvUrl where
// SetUsersPath put it.
func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.configRequests++
	fault, faulted := s.takeFaultLocked(0, configEndpoint)
	usersPath := s.usersPath
	s.mu.Unlock()
	if faulted && fault.answer(w, r) {
		return
	}
	origin := "http://" + r.Host
	if r.TLS != nil {
		origin = "https://" + r.Host
	}
	base := origin + strings.TrimSuffix(r.URL.Path, configSuffix)
	users := base + usersSuffix
	if usersPath != "" {
		users = origin + usersPath
	}
	codes := make([]errorCode, 0, len(messages))
	for n, m := range messages {
		codes = append(codes, errorCode{n, m})
	}
	slices.SortFunc(codes, func(a, b errorCode) int { return a.ErrorNumber - b.ErrorNumber })
	writeJSON(w, serviceConfig{
		InvitationEmailURL:               "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?cc=us&inviteCode=%inviteCode%&mt=8",
		RegisterUserSrvURL:               base + "/registerVPPUserSrv",
		EditUserSrvURL:                   base + "/editVPPUserSrv",
		GetUserSrvURL:                    base + "/getVPPUserSrv",
		RetireUserSrvURL:                 base + "/retireVPPUserSrv",
		GetUsersSrvURL:                   users,
		GetLicensesSrvURL:                base + "/getVPPLicensesSrv",
		GetVPPAssetsSrvURL:               base + "/getVPPAssetsSrv",
		ManageVPPLicensesByAdamIDSrvURL:  base + "/manageVPPLicensesByAdamIdSrv",
		ClientConfigSrvURL:               base + "/VPPClientConfigSrv",
		ContentMetadataLookupURL:         "https://uclient-api.itunes.apple.com/WebObjects/MZStorePlatform.woa/wa/lookup",
		VPPWebsiteURL:                    "https://vpp.itunes.apple.com",
		MaxBatchAssociateLicenseCount:    20,
		MaxBatchDisassociateLicenseCount: 20,
		ErrorCodes:                       codes,
	}, faulted && fault.Truncate)
}

type wireUser struct {
	UserID          int64  `json:"userId"`
	Email           string `json:"email,omitempty"`
	ClientUserIDStr string `json:"clientUserIdStr,omitempty"`
	Status          string `json:"status,omitempty"`
	ItsIDHash       string `json:"itsIdHash,omitempty"`
	InviteCode      string `json:"inviteCode,omitempty"`
	InviteURL       string `json:"inviteUrl,omitempty"`
}

type location struct {
	LocationID   int64  `json:"locationId"`
	LocationName string `json:"locationName"`
}

type response struct {
	Status             int        `json:"status"`
	BatchToken         string     `json:"batchToken,omitempty"`
	SinceModifiedToken string     `json:"sinceModifiedToken,omitempty"`
	BatchCount         int        `json:"batchCount"`
	TotalBatchCount    string     `json:"totalBatchCount"` // a string, as Apple sends it
	TotalCount         *int       `json:"totalCount,omitempty"`
	UID                string     `json:"uId"`
	Location           location   `json:"location"`
	Users              []wireUser `json:"users"`
}

// answer serves one batch; a non-zero result is an Apple error number. sh
// shapes a listing that this request starts.
func (s *Server) answer(req request, bt batchToken, batch int, sh shape) (response, int) {
	s.mu.Lock()
	defer s.mu.Unlock()

	var l *listing
	listID := bt.List
	if req.batchToken != "" {
		l = s.listings[bt.List]
		if l == nil || batch < 2 {
			return response{}, errBatchUnrecoverable
		}
	} else {
		var errNum int
		if listID, l, errNum = s.startListingLocked(req, sh); errNum != 0 {
			return response{}, errNum
		}
	}
	return l.batch(listID, batch, s.batchSize)
}

// startListingLocked freezes what a new listing will show, so that later
// Puts cannot shift users between its batches.
func (s *Server) startListingLocked(req request, sh shape) (uint64, *listing, int) {
	l := &listing{seq: s.seq, retired: req.includeRetired, shape: sh}
	var since uint64
	if req.sinceToken != "" {
		var st sinceToken
		if !decodeToken(req.sinceToken, &st) || st.Seq > s.seq {
			return 0, nil, errBatchUnrecoverable
		}
		since, l.retired = st.Seq, st.Retired
	}
	retiredOnly := req.retiredOnly
	l.users = s.sortedLocked(func(r record) bool {
		// Apple reports Deleted users through getVPPUserSrv only.
		if r.seq <= since || r.user.Status == StatusDeleted {
			return false
		}
		retired := r.user.Status == StatusRetired
		if retiredOnly {
			return retired
		}
		return l.retired || !retired
	})
	s.nextList++
	s.listings[s.nextList] = l
	if len(s.listings) > maxListings {
		delete(s.listings, s.nextList-maxListings)
	}
	return s.nextList, l, 0
}

// batch serves the 1-based batch of listing listID in batches of size.
func (l *listing) batch(listID uint64, batch, size int) (response, int) {
	total := max(1, (len(l.users)+size-1)/size)
	slot := batch // which batch of users this request serves
	if l.emptyAt > 0 && l.emptyAt <= total {
		total++
		if batch > l.emptyAt {
			slot--
		}
	}
	if batch > total && !l.endless {
		return response{}, errBatchUnrecoverable
	}
	// An endless listing runs past its users: those batches are empty.
	lo := min((slot-1)*size, len(l.users))
	hi := min(lo+size, len(l.users))
	if batch == l.emptyAt {
		lo, hi = 0, 0
	}
	resp := response{
		BatchCount:      hi - lo,
		TotalBatchCount: strconv.Itoa(total),
		UID:             "100978",
		Location:        location{LocationID: 22222222222, LocationName: "LocationName"},
		Users:           make([]wireUser, 0, hi-lo),
	}
	if l.zeroTotal {
		resp.TotalBatchCount = "0"
	}
	if batch == 1 && !l.noCount {
		n := len(l.users)
		resp.TotalCount = &n
	}
	for _, u := range l.users[lo:hi] {
		resp.Users = append(resp.Users, wireUser(u))
	}
	if batch < total || l.endless {
		resp.BatchToken = encodeToken(batchToken{List: listID, Batch: batch + 1, Retired: l.retired})
	} else {
		resp.SinceModifiedToken = encodeToken(sinceToken{Seq: l.seq, Retired: l.retired})
	}
	return resp, 0
}

func writeError(w http.ResponseWriter, number int, message string, truncate bool) {
	writeJSON(w, struct {
		Status       int    `json:"status"`
		ErrorNumber  int    `json:"errorNumber"`
		ErrorMessage string `json:"errorMessage"`
	}{-1, number, message}, truncate)
}

func writeJSON(w http.ResponseWriter, v any, truncate bool) {
	writeRewritten(w, v, nil, truncate)
}

// writeRewritten is writeJSON with the encoded body passed through rewrite
// (when not nil) before it is cut.
func writeRewritten(w http.ResponseWriter, v any, rewrite func([]byte) []byte, truncate bool) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Apple writes '&' in invite URLs as is.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body := b.Bytes()
	if rewrite != nil {
		body = rewrite(body)
	}
	if truncate {
		body = body[:len(body)/2]
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// compile-time check that the fake is a handler.
var _ http.Handler = (*Server)(nil)
