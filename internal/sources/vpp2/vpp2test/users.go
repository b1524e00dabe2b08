package vpp2test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// wireUser is a ResponseUser as Apple spells it.
type wireUser struct {
	ClientUserID string `json:"clientUserId"`
	Email        string `json:"email,omitempty"`
	IDHash       string `json:"idHash,omitempty"`
	InviteCode   string `json:"inviteCode,omitempty"`
	Status       string `json:"status"`
}

// response is a GetUsersResponse.
type response struct {
	CurrentPageIndex    int        `json:"currentPageIndex"`
	NextPageIndex       *int       `json:"nextPageIndex,omitempty"`
	Size                int        `json:"size"`
	TotalPages          *int       `json:"totalPages,omitempty"`
	TokenExpirationDate string     `json:"tokenExpirationDate"`
	UID                 string     `json:"uId"`
	VersionID           string     `json:"versionId"`
	Users               []wireUser `json:"users"`
}

// authError is the error number for a request's Authorization header, 0
// when the sToken is the one the fake accepts.
func (s *Server) authError(r *http.Request) int {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	switch {
	case h == "":
		return errLoginRequired
	case !ok:
		return errInvalidAuth
	case tok != s.sToken:
		return errLoginRequired
	}
	return 0
}

func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	k := listKind
	if q.Has("clientUserId") {
		k = lookupKind
	}
	idx, err := strconv.Atoi(q.Get("pageIndex"))
	if !q.Has("pageIndex") {
		idx, err = 0, nil
	}
	s.mu.Lock()
	if k == lookupKind {
		s.lookupRequests++
	} else {
		s.requests++
	}
	hook := s.beforePage
	s.mu.Unlock()
	if hook != nil && k == listKind && err == nil {
		hook(idx + 1)
	}
	f, faulted := s.takeFault(idx+1, k)
	if faulted {
		if applyFault(w, r, f) {
			return
		}
		if f.ChangeVersion {
			s.mu.Lock()
			s.bump++
			s.mu.Unlock()
		}
	}
	if n := s.authError(r); n != 0 {
		writeError(w, http.StatusUnauthorized, n, "")
		return
	}
	if err != nil || idx < 0 {
		writeError(w, http.StatusBadRequest, errInvalidPageIndex, "")
		return
	}
	resp, number := s.page(q, idx)
	if number != 0 {
		writeError(w, http.StatusBadRequest, number, "")
		return
	}
	b, _ := json.Marshal(resp)
	if faulted && f.Rewrite != nil {
		b = f.Rewrite(b)
	}
	if faulted && f.Truncate {
		b = b[:len(b)/2]
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// page computes page idx of the listing q asks for, or the error number
// for a request it cannot answer. A listing is computed at its page 0 and
// its later pages are served from it (as Apple serves one versionId),
// unless a SetBeforePage hook may have changed the directory: then every
// page is computed anew. Serving a listing of n users therefore costs
// n log n once, not at every page.
func (s *Server) page(q map[string][]string, idx int) (response, int) {
	var since uint64
	if v := first(q, "sinceVersionId"); v != "" {
		n, ok := parseVersionID(v)
		if !ok {
			return response{}, errInvalidVersionID
		}
		since = n
	}
	var (
		entries []wireUser
		version uint64
	)
	if key, byKey := q["clientUserId"]; byKey {
		entries, version = s.lookup(key[0], q)
	} else {
		entries, version = s.listing(since, q, idx)
	}
	s.mu.Lock()
	bump := s.bump
	size, emptyAt, endless := s.pageSize, s.emptyAt, s.endless
	s.mu.Unlock()
	if since > version {
		return response{}, errInvalidVersionID
	}
	total := max(1, (len(entries)+size-1)/size)
	if emptyAt > 0 && emptyAt <= total+1 {
		total++
	}
	if idx >= total && !endless && idx > 0 {
		return response{}, errInvalidPageIndex
	}
	src := idx // the page of entries served at idx
	if emptyAt > 0 && idx+1 > emptyAt {
		src--
	}
	var page []wireUser
	if (emptyAt == 0 || idx+1 != emptyAt) && src*size < len(entries) {
		page = entries[src*size : min(len(entries), (src+1)*size)]
	}
	resp := response{CurrentPageIndex: idx, Size: len(page), TokenExpirationDate: "2099-12-31T08:00:00+0000",
		UID: "2049025000431439", VersionID: versionID(version, bump), Users: page}
	if resp.Users == nil {
		resp.Users = []wireUser{}
	}
	if next := idx + 1; next < total || endless {
		resp.NextPageIndex = &next
	}
	if endless {
		// Always one page more than asked for: a client must notice that
		// totalPages does not hold still.
		total = idx + 2
	}
	resp.TotalPages = &total
	return resp, 0
}

// listing is the entries of the listing q asks for (since, activeOnly,
// retiredOnly) and the directory's version they are of: computed at page
// 0, whenever a hook is set and whenever the directory changed since (its
// versionId then moves, as Apple's does), else the last one computed for
// the same query.
func (s *Server) listing(since uint64, q map[string][]string, idx int) ([]wireUser, uint64) {
	key := fmt.Sprintf("%d/%s/%s", since, first(q, "activeOnly"), first(q, "retiredOnly"))
	s.mu.Lock()
	l, ok := s.lists[key]
	live := s.beforePage != nil
	s.mu.Unlock()
	if ok && idx > 0 && !live && l.version == s.dir.Version() {
		return l.entries, l.version
	}
	users, version := s.dir.Since(since)
	entries := filter(users, q)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lists) >= maxListings {
		clear(s.lists)
	}
	s.lists[key] = &listing{entries: entries, version: version}
	s.byKey = nil // lookups see the directory anew
	return entries, version
}

// lookup is the entries of one clientUserId. They come from an index of
// the whole directory built at the first lookup after a listing started,
// each entry checked against the directory as it is now (Get): an entry
// removed or changed since shows at once, one added since shows once the
// next listing has started. A lookup thus costs a few map reads, not a
// listing of the directory.
func (s *Server) lookup(key string, q map[string][]string) ([]wireUser, uint64) {
	s.mu.Lock()
	idx, version := s.byKey, s.byKeyVersion
	s.mu.Unlock()
	if idx == nil || version != s.dir.Version() {
		users, v := s.dir.Since(0)
		idx, version = map[string][]int64{}, v
		for _, u := range users {
			idx[u.ClientUserIDStr] = append(idx[u.ClientUserIDStr], u.UserID)
		}
		s.mu.Lock()
		s.byKey, s.byKeyVersion = idx, version
		s.mu.Unlock()
	}
	var users []vpptest.User
	for _, id := range idx[key] {
		if u, ok := s.dir.Get(id); ok && u.ClientUserIDStr == key {
			users = append(users, u)
		}
	}
	return filter(users, q), version
}

// maxListings bounds the listings kept (one per query: a full listing and
// the incremental ones of the cursors in use).
const maxListings = 8

// listing is a computed listing.
type listing struct {
	entries []wireUser
	version uint64
}

func first(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// filter turns legacy users into the v2 entries q asks for.
func filter(users []vpptest.User, q map[string][]string) []wireUser {
	key, byKey := q["clientUserId"]
	activeOnly := first(q, "activeOnly") == "true"
	retiredOnly := first(q, "retiredOnly") == "true"
	out := make([]wireUser, 0, len(users))
	for _, u := range users {
		retired := u.Status == vpptest.StatusRetired || u.Status == vpptest.StatusDeleted
		switch {
		case u.ClientUserIDStr == "",
			byKey && u.ClientUserIDStr != key[0],
			activeOnly && retired,
			retiredOnly && !retired:
			continue
		}
		out = append(out, wireUser{ClientUserID: u.ClientUserIDStr, Email: u.Email, IDHash: u.ItsIDHash,
			InviteCode: u.InviteCode, Status: u.Status})
	}
	return out
}
