// Package veeamtest is a hand-written fake of the Veeam Service Provider
// Console v3 endpoints rollcall uses: GET /api/v3/users (the list), GET
// /api/v3/users/{instanceUid} (the lookup that confirms an absence) and POST
// /api/v3/token. Tests, the simulator and benchmarks share it, so it models
// the behaviours the client must survive (paging, throttling, 520s, paging
// drift, wrong echoed offsets, truncated bodies) rather than the whole API.
// Faults target either list pages or lookups (Fault.Lookup), and
// SetBeforePage lets a test change the directory between the pages of one
// sweep, as a live directory does.
//
// Simplification: the fake always sorts users by instanceUid (ascending
// unless the sort parameter asks for descending), even when no sort is
// given. A real server may return an unsorted, unstable order without one,
// which is why the client always sends the sort parameter.
package veeamtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths the fake serves.
const (
	UsersPath = "/api/v3/users"
	TokenPath = "/api/v3/token"
)

// DefaultMaxLimit is the server's default cap on limit.
const DefaultMaxLimit = 500

// tokenTTL is what the token endpoint announces as expires_in.
const tokenTTL = 3600

// Profile is a user's profile; nil fields are JSON null, as in the fixture.
type Profile struct {
	FirstName, LastName, Title, Email, Address, Phone *string
}

// User is a Veeam portal user as the fake stores and serves it.
type User struct {
	InstanceUID, OrganizationUID, UserName, Status, Role string
	Profile                                              Profile
	MFAPolicyStatus                                      string
	// Password, when set, is served in credentials.password, as the
	// users schema allows: a secret the poller must never carry on.
	Password string
}

func ptr(s string) *string { return &s }

// FixtureUsers returns the three users of the documented example response,
// in the fixture's order, with its lower-camel enum values as written.
func FixtureUsers() []User {
	mk := func(id, org, name string) User {
		return User{
			InstanceUID:     id,
			OrganizationUID: org,
			UserName:        name,
			Status:          "enabled",
			Role:            "companyOwner",
			Profile:         Profile{Title: ptr("mr")},
		}
	}
	return []User{
		mk("c3728f5b-82f7-4e1a-b36b-68c7d1b3w8eb", "b3cf51f3-d782-4b59-b4a4-adacecc260e2", "Alpha"),
		mk("1ee4a452-7fda-49b7-9074-92db1dc87fa9", "5a5f200b-472e-4d27-b1d8-fe5d03f04e50", "Beta"),
		mk("29aeca21-127e-4664-9c69-36a13b21f389", "a607c887-bad3-4de6-90c6-0ee3d51c55ec", "Delta"),
	}
}

// Fault is a scripted misbehaviour of GET /api/v3/users or, with Lookup, of
// GET /api/v3/users/{instanceUid}.
type Fault struct {
	// Lookup makes the fault apply only to single-user GETs (the next one,
	// whatever the id; Page is ignored); without it the fault applies only
	// to list requests, so a lookup never consumes a fault meant for a page.
	Lookup           bool
	Page             int           // 1-based page index (offset/limit+1) it applies to; 0 = the next list request
	Times            int           // 0 means 1
	Status           int           // e.g. 429, 520, 401, 400; 0 serves the page normally
	RetryAfter       int           // seconds, sent as "retryAfter" in the errors body
	RetryAfterHeader string        // Retry-After header value
	Message          string        // errors[0].message; a default per status when empty
	Truncate         bool          // cut the JSON body in half (status 200)
	Delay            time.Duration // wait before answering (ends early if the client goes away)
	InsertBefore     *User         // paging drift: insert this user before serving the page (or lookup)
	WrongOffset      bool          // echo a wrong pagingInfo.offset (list requests only)
	// Rewrite replaces the JSON body of a 200 answer with what it returns,
	// before Truncate: a test can give a field the wrong type.
	Rewrite func(body []byte) []byte
}

// Server is the fake. It is safe for concurrent use.
type Server struct {
	mu    sync.Mutex
	token string
	users map[string]User
	// sorted caches the users in ascending instanceUid order until the
	// next change, so that paging through a large directory does not sort
	// it again for every page.
	sorted   []User
	maxLimit int
	requests int // list requests
	lookups  int // single-user requests
	faults   []*Fault
	// beforePage runs, outside mu, before each list request is answered.
	beforePage func(page int)

	passwords map[string]string    // username → password
	access    map[string]time.Time // issued access token → expiry
	refresh   map[string]string    // issued refresh token → username
	grants    map[string]int       // token requests by grant_type
}

// NewServer returns a fake that accepts token as a static bearer token (API
// key) and serves users. An empty token accepts only issued access tokens.
func NewServer(token string, users ...User) *Server {
	s := &Server{
		token:     token,
		users:     make(map[string]User, len(users)),
		maxLimit:  DefaultMaxLimit,
		passwords: map[string]string{},
		access:    map[string]time.Time{},
		refresh:   map[string]string{},
		grants:    map[string]int{},
	}
	for _, u := range users {
		s.users[u.InstanceUID] = u
	}
	return s
}

// Put adds or replaces a user.
func (s *Server) Put(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.InstanceUID] = u
	s.sorted = nil
}

// Remove deletes a user; removing an unknown user is not an error.
func (s *Server) Remove(instanceUID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, instanceUID)
	s.sorted = nil
}

// Get returns one user.
func (s *Server) Get(instanceUID string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[instanceUID]
	return u, ok
}

// Users returns every user sorted by InstanceUID.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sortedLocked(false))
}

// SetMaxLimit sets the server's cap on limit (default 500): a request for
// more gets at most n items. A cap above 500 also widens the accepted limit
// range, as an administrator raising it would.
func (s *Server) SetMaxLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxLimit = n
}

// Requests is how many /api/v3/users requests the fake has received,
// including the ones it refused.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// LookupRequests is how many GET /api/v3/users/{instanceUid} requests the
// fake has received, including the ones it refused.
func (s *Server) LookupRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

// SetBeforePage makes the fake call f with the 1-based page index
// (offset/limit+1) before it answers each authorised, well-formed list
// request, retries included, so that a test can add or delete users between
// the pages of one sweep. f runs outside the fake's lock and may call Put and
// Remove. nil removes the hook.
func (s *Server) SetBeforePage(f func(page int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforePage = f
}

// SetPassword enables POST /api/v3/token for username with password.
func (s *Server) SetPassword(username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passwords[username] = password
}

// ExpireTokens invalidates every issued access token (as expiry or another
// login of the same user would) while keeping refresh tokens valid.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
}

// TokenRequests is how many POST /api/v3/token requests with grantType the
// fake has received ("password", "refresh_token").
func (s *Server) TokenRequests(grantType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants[grantType]
}

// InjectFault queues f; faults apply in the order injected.
func (s *Server) InjectFault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults drops every fault not yet consumed.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// ServeHTTP serves the three endpoints; anything else is a 404 errors
// envelope.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, isUser := userID(r.URL)
	switch {
	case r.URL.Path == UsersPath && r.Method == http.MethodGet:
		s.serveUsers(w, r)
	case isUser && r.Method == http.MethodGet:
		s.serveUser(w, r, id)
	case r.URL.Path == TokenPath && r.Method == http.MethodPost:
		s.serveToken(w, r)
	case r.URL.Path == UsersPath || r.URL.Path == TokenPath || isUser:
		writeError(w, http.StatusMethodNotAllowed, 0, "", "Method not allowed.")
	default:
		writeError(w, http.StatusNotFound, 0, "", "Resource not found.")
	}
}

// userID returns the decoded instanceUid of a /api/v3/users/{instanceUid}
// URL. It splits the escaped path, so that an id holding an escaped '/' is
// one segment, as it is for the real API.
func userID(u *url.URL) (string, bool) {
	seg, ok := strings.CutPrefix(u.EscapedPath(), UsersPath+"/")
	if !ok || seg == "" || strings.Contains(seg, "/") {
		return "", false
	}
	id, err := url.PathUnescape(seg)
	return id, err == nil
}

// refused answers a request the fake will not serve: a bearer token it did
// not accept or issue (401), or X-Request-id (202, as the real API turns the
// request into an asynchronous action).
func (s *Server) refused(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	authorised := s.authorisedLocked(r.Header.Get("Authorization"))
	s.mu.Unlock()
	switch {
	case !authorised:
		writeError(w, http.StatusUnauthorized, 0, "", "Authorization has been denied for this request.")
	case r.Header.Get("X-Request-id") != "":
		w.Header().Set("Location", "/api/v3/asyncActions/00000000-0000-0000-0000-000000000000")
		w.WriteHeader(http.StatusAccepted)
	default:
		return false
	}
	return true
}

func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	maxLimit := s.maxLimit
	s.mu.Unlock()
	if s.refused(w, r) {
		return
	}
	q := r.URL.Query()
	limit, offset := 100, 0
	maxAccepted := max(DefaultMaxLimit, maxLimit)
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAccepted {
			writeError(w, http.StatusBadRequest, 0, "", fmt.Sprintf("Property value must be between 1 and %d.", maxAccepted))
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, 0, "", "Property value must be larger or equal to 0.")
			return
		}
		offset = n
	}
	desc := false
	if v := q.Get("sort"); v != "" {
		var keys []struct{ Property, Direction string }
		if err := json.Unmarshal([]byte(v), &keys); err != nil {
			writeError(w, http.StatusBadRequest, 0, "", "Invalid sort expression.")
			return
		}
		for _, k := range keys {
			if !strings.EqualFold(k.Property, "instanceUid") {
				writeError(w, http.StatusBadRequest, 0, "", fmt.Sprintf("Unknown sort property %q.", k.Property))
				return
			}
			desc = strings.EqualFold(k.Direction, "descending")
		}
	}

	page := offset/limit + 1
	s.mu.Lock()
	before := s.beforePage
	s.mu.Unlock()
	if before != nil {
		before(page)
	}
	f := s.takeFault(page, false)
	if s.faulted(w, r, f) {
		return
	}

	s.mu.Lock()
	all := s.sortedLocked(desc)
	s.mu.Unlock()
	n := min(limit, maxLimit)
	served := []User{}
	if offset < len(all) {
		served = all[offset:min(offset+n, len(all))]
	}
	items := make([]wireUser, len(served))
	for i, u := range served {
		items[i] = toWire(u)
	}
	env := usersEnvelope{Data: items}
	env.Meta.PagingInfo = pagingInfo{Total: len(all), Count: len(items), Offset: offset}
	if f != nil && f.WrongOffset {
		env.Meta.PagingInfo.Offset = offset + 1
	}
	writeJSON(w, env, f)
}

// serveUser answers GET /api/v3/users/{instanceUid} with the user in
// Veeam's single-resource envelope, {"data":{…}}, or a 404 errors envelope.
func (s *Server) serveUser(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	s.lookups++
	s.mu.Unlock()
	if s.refused(w, r) {
		return
	}
	f := s.takeFault(0, true)
	if s.faulted(w, r, f) {
		return
	}
	u, ok := s.Get(id)
	if !ok {
		writeError(w, http.StatusNotFound, 0, "", fmt.Sprintf("User with UID %s was not found.", id))
		return
	}
	writeJSON(w, struct {
		Data wireUser `json:"data"`
	}{toWire(u)}, f)
}

// faulted applies f's delay and insertion and, when f has an error status,
// answers with it and reports true.
func (s *Server) faulted(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f == nil {
		return false
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-r.Context().Done():
			t.Stop()
			return true
		case <-t.C:
		}
	}
	if f.InsertBefore != nil {
		s.Put(*f.InsertBefore)
	}
	if f.Status == 0 || f.Status == http.StatusOK {
		return false
	}
	if f.RetryAfterHeader != "" {
		w.Header().Set("Retry-After", f.RetryAfterHeader)
	}
	writeError(w, f.Status, f.RetryAfter, "", f.Message)
	return true
}

// writeJSON sends v as a 200, cut in half when f says so.
func writeJSON(w http.ResponseWriter, v any, f *Fault) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, 520, 0, "", "Internal error.")
		return
	}
	if f != nil && f.Rewrite != nil {
		body = f.Rewrite(body)
	}
	if f != nil && f.Truncate {
		body = body[:len(body)/2]
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// takeFault returns the first queued fault that applies to page of the
// list (lookup false) or to a lookup (lookup true), consuming one of its
// times.
func (s *Server) takeFault(page int, lookup bool) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Lookup != lookup || (!lookup && f.Page != 0 && f.Page != page) {
			continue
		}
		f.Times--
		if f.Times <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		c := *f
		return &c
	}
	return nil
}

func (s *Server) authorisedLocked(header string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	if s.token != "" && tok == s.token {
		return true
	}
	exp, ok := s.access[tok]
	return ok && time.Now().Before(exp)
}

// sortedLocked returns the users sorted by instanceUid. The slice is
// shared: callers must not modify it.
func (s *Server) sortedLocked(desc bool) []User {
	if s.sorted == nil {
		out := make([]User, 0, len(s.users))
		for _, u := range s.users {
			out = append(out, u)
		}
		slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.InstanceUID, b.InstanceUID) })
		s.sorted = out
	}
	if !desc {
		return s.sorted
	}
	out := slices.Clone(s.sorted)
	slices.Reverse(out)
	return out
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeTokenError(w, "invalid_request", "The request body is not a form.")
		return
	}
	grant := r.PostForm.Get("grant_type")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants[grant]++
	var user string
	switch grant {
	case "password":
		u, p := r.PostForm.Get("username"), r.PostForm.Get("password")
		want, ok := s.passwords[u]
		if !ok || p != want {
			writeTokenError(w, "invalid_grant", "The user name or password is incorrect.")
			return
		}
		user = u
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		u, ok := s.refresh[rt]
		if !ok {
			writeTokenError(w, "invalid_grant", "The refresh token is invalid or expired.")
			return
		}
		// A refresh returns a new pair; the old refresh token is spent.
		delete(s.refresh, rt)
		user = u
	default:
		writeTokenError(w, "unsupported_grant_type", "The grant type is not supported.")
		return
	}
	access, refresh := randomToken(), randomToken()
	s.access[access] = time.Now().Add(tokenTTL * time.Second)
	s.refresh[refresh] = user
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token":  access,
		"token_type":    "bearer",
		"refresh_token": refresh,
		"expires_in":    tokenTTL,
	})
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Wire shapes, field order as in the documented example.

type pagingInfo struct {
	Total  int `json:"total"`
	Count  int `json:"count"`
	Offset int `json:"offset"`
}

type usersEnvelope struct {
	Meta struct {
		PagingInfo pagingInfo `json:"pagingInfo"`
	} `json:"meta"`
	Data []wireUser `json:"data"`
}

type wireProfile struct {
	FirstName *string `json:"firstName"`
	LastName  *string `json:"lastName"`
	Title     *string `json:"title"`
	Email     *string `json:"email"`
	Address   *string `json:"address"`
	Phone     *string `json:"phone"`
}

type wireCredentials struct {
	UserName string  `json:"userName"`
	Password *string `json:"password"`
}

type wireUser struct {
	InstanceUID     string          `json:"instanceUid"`
	OrganizationUID string          `json:"organizationUid"`
	UserName        string          `json:"userName"`
	Status          string          `json:"status"`
	Role            string          `json:"role"`
	Profile         wireProfile     `json:"profile"`
	Credentials     wireCredentials `json:"credentials"`
	MFAPolicyStatus string          `json:"mfaPolicyStatus,omitempty"`
}

func toWire(u User) wireUser {
	p := u.Profile
	var password *string
	if u.Password != "" {
		password = &u.Password
	}
	return wireUser{
		InstanceUID:     u.InstanceUID,
		OrganizationUID: u.OrganizationUID,
		UserName:        u.UserName,
		Status:          u.Status,
		Role:            u.Role,
		Profile:         wireProfile(p),
		Credentials:     wireCredentials{UserName: u.UserName, Password: password},
		MFAPolicyStatus: u.MFAPolicyStatus,
	}
}

type apiError struct {
	Message    string `json:"message"`
	Type       string `json:"type"`
	Code       int    `json:"code"`
	RetryAfter int    `json:"retryAfter,omitempty"`
}

// writeError sends the errors envelope. Veeam's code is numeric and usually
// the HTTP status.
func writeError(w http.ResponseWriter, status, retryAfter int, typ, message string) {
	if typ == "" {
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			typ = "security"
		case status == http.StatusTooManyRequests:
			typ = "retryableLogical"
		case status >= 500:
			typ = "transport"
		default:
			typ = "logical"
		}
	}
	if message == "" {
		message = http.StatusText(status)
		if message == "" {
			message = "Unknown error."
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string][]apiError{
		"errors": {{Message: message, Type: typ, Code: status, RetryAfter: retryAfter}},
	})
}

func writeTokenError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// QuerySort is the sort parameter value the client is expected to send.
const QuerySort = `[{"property":"instanceUid","direction":"ascending"}]`
