package simulation

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
	"github.com/rollcall/rollcall/pkg/events"
)

// Source names the simulation's poller uses.
const (
	vppSource   = "vpp"
	veeamSource = "veeam"
	// vpp2Source lists the VPP directory through API v2 (vpp2test over
	// the same legacy fake): each user under its clientUserIdStr.
	vpp2Source = "vpp2"
)

// record is one moment of a user's true history.
type record struct {
	at      time.Time
	present bool
	user    events.User // the normalised user, when present
}

// directory is both directories as the fakes serve them, and the oracle's
// record of their true history: every change is recorded, with the time,
// under the same lock that applies it to the fake, so that no observation
// of the fake can precede its record.
type directory struct {
	seed  uint64
	vpp   *vpptest.Server
	vpp2  *vpp2test.Server // serves vpp's directory
	veeam *veeamtest.Server

	mu      sync.Mutex
	history map[string][]record // "<source> <id>" → records in time order
	veeamAt map[int]veeamtest.User
	skipped int // changes that no longer applied when their time came
	applied int
}

func newDirectory(s *Schedule, vppToken, veeamToken string) *directory {
	d := &directory{seed: s.Seed, vpp: vpptest.NewServer(vppToken), veeam: veeamtest.NewServer(veeamToken),
		history: map[string][]record{}, veeamAt: map[int]veeamtest.User{}}
	d.vpp.SetBatchSize(s.VPPBatch)
	d.vpp2 = vpp2test.NewServer(vppToken, d.vpp)
	d.vpp2.SetPageSize(s.VPPBatch)
	d.vpp2.SetMaxRequestPerSecond(1000)
	now := time.Now()
	for i := range s.VPPUsers {
		u := d.vppUser(i)
		u.Status = map[string]string{"registered": vpptest.StatusRegistered, "associated": vpptest.StatusAssociated, "retired": vpptest.StatusRetired}[s.vppStatus0(i)]
		if u.Status != vpptest.StatusRegistered {
			u.ItsIDHash, u.InviteCode, u.InviteURL = fmt.Sprintf("hash%d=", i), "", ""
		}
		d.putVPP(now, u)
	}
	for i := range s.VeeamUsers {
		d.putVeeam(now, d.veeamUser(i))
	}
	return d
}

// vppStatus0 is a user's status when the schedule starts.
func (s *Schedule) vppStatus0(i int) string {
	return []string{"registered", "associated", "associated", "retired"}[i%4]
}

func (d *directory) vppUser(i int) vpptest.User {
	id := int64(1000 + i)
	code := fmt.Sprintf("%032x", id*7919)
	return vpptest.User{UserID: id, Email: fmt.Sprintf("sim%d@school.example", i), ClientUserIDStr: fmt.Sprintf("client-%d", i),
		Status: vpptest.StatusRegistered, InviteCode: code, InviteURL: "https://invite.example/" + code}
}

var roles = []string{"CompanyOwner", "CompanyAdministrator", "CompanyLocationAdministrator", "CompanyLocationUser", "PortalOperator"}

// veeamUser is user i as first created. Its instanceUid starts with a
// hash, so that the order of the listing (by instanceUid) is unrelated to
// the order users were created in: a deletion anywhere shifts users across
// page boundaries.
func (d *directory) veeamUser(i int) veeamtest.User {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d/%d", d.seed, i)
	email, first, last := fmt.Sprintf("op%d@msp.example", i), fmt.Sprintf("Op%d", i), "Sim"
	return veeamtest.User{
		InstanceUID:     fmt.Sprintf("%08x-0000-4000-8000-%012d", h.Sum32(), i),
		OrganizationUID: fmt.Sprintf("0rg%05d-0000-4000-8000-000000000000", i%3),
		UserName:        fmt.Sprintf("op%d", i), Status: "Enabled", Role: roles[i%len(roles)],
		Profile: veeamtest.Profile{FirstName: &first, LastName: &last, Email: &email},
	}
}

func key(source, id string) string { return source + " " + id }

// normVPP is what rollcall's VPP client makes of u.
func normVPP(u vpptest.User) events.User {
	return events.User{Source: vppSource, SourceKind: events.KindVPP, ID: strconv.FormatInt(u.UserID, 10),
		Email: u.Email, ClientUserID: u.ClientUserIDStr, Status: strings.ToLower(u.Status)}
}

// normVPP2 is what rollcall's vpp2 client makes of u, the one entry of
// its clientUserIdStr (the simulation gives every user its own).
func normVPP2(u vpptest.User) events.User {
	return events.User{Source: vpp2Source, SourceKind: events.KindVPP2, ID: u.ClientUserIDStr,
		Email: u.Email, ClientUserID: u.ClientUserIDStr, Status: strings.ToLower(u.Status)}
}

// normVeeam is what rollcall's Veeam client makes of u.
func normVeeam(u veeamtest.User) events.User {
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	return events.User{Source: veeamSource, SourceKind: events.KindVeeam, ID: u.InstanceUID, UserName: u.UserName,
		Status: strings.ToLower(u.Status), Role: u.Role, OrganizationID: u.OrganizationUID,
		Email: deref(u.Profile.Email), FirstName: deref(u.Profile.FirstName), LastName: deref(u.Profile.LastName)}
}

func (d *directory) putVPP(at time.Time, u vpptest.User) {
	n := normVPP(u)
	d.history[key(vppSource, n.ID)] = append(d.history[key(vppSource, n.ID)], record{at: at, present: true, user: n})
	n2 := normVPP2(u)
	d.history[key(vpp2Source, n2.ID)] = append(d.history[key(vpp2Source, n2.ID)], record{at: at, present: true, user: n2})
	d.vpp.Put(u)
}

func (d *directory) putVeeam(at time.Time, u veeamtest.User) {
	n := normVeeam(u)
	d.history[key(veeamSource, n.ID)] = append(d.history[key(veeamSource, n.ID)], record{at: at, present: true, user: n})
	d.veeam.Put(u)
}

// apply makes a change of the schedule, if it still applies.
func (d *directory) apply(st Step) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	ok := false
	if strings.HasPrefix(string(st.Op), "vpp-") {
		ok = d.applyVPP(now, st)
	} else {
		ok = d.applyVeeam(now, st)
	}
	if ok {
		d.applied++
	} else {
		d.skipped++
	}
}

func (d *directory) applyVPP(now time.Time, st Step) bool {
	base := d.vppUser(st.User)
	u, exists := d.vpp.Get(base.UserID)
	switch st.Op {
	case OpVPPRegister:
		if exists {
			return false
		}
		d.putVPP(now, base)
		return true
	case OpVPPDelete:
		if !exists {
			return false
		}
		d.history[key(vppSource, normVPP(u).ID)] = append(d.history[key(vppSource, normVPP(u).ID)], record{at: now})
		d.history[key(vpp2Source, u.ClientUserIDStr)] = append(d.history[key(vpp2Source, u.ClientUserIDStr)], record{at: now})
		d.vpp.Remove(u.UserID)
		return true
	}
	if !exists {
		return false
	}
	switch st.Op {
	case OpVPPAssociate:
		if u.Status != vpptest.StatusRegistered {
			return false
		}
		u.Status, u.ItsIDHash, u.InviteCode, u.InviteURL = vpptest.StatusAssociated, fmt.Sprintf("hash%d=", st.User), "", ""
	case OpVPPRetire:
		if u.Status == vpptest.StatusRetired {
			return false
		}
		u.Status = vpptest.StatusRetired
	case OpVPPReregister:
		if u.Status == vpptest.StatusRegistered {
			return false
		}
		u.Status, u.ItsIDHash = vpptest.StatusRegistered, ""
	case OpVPPEmail:
		u.Email = fmt.Sprintf("sim%d.%d@school.example", st.User, st.N)
	}
	d.putVPP(now, u)
	return true
}

func (d *directory) applyVeeam(now time.Time, st Step) bool {
	base := d.veeamUser(st.User)
	u, exists := d.veeam.Get(base.InstanceUID)
	switch st.Op {
	case OpVeeamCreate, OpVeeamRecreate:
		if exists {
			return false
		}
		if last, ok := d.veeamAt[st.User]; ok {
			base = last // a recreated user comes back as it was
		}
		d.putVeeam(now, base)
		return true
	}
	if !exists {
		return false
	}
	switch st.Op {
	case OpVeeamDelete:
		d.veeamAt[st.User] = u
		d.history[key(veeamSource, u.InstanceUID)] = append(d.history[key(veeamSource, u.InstanceUID)], record{at: now})
		d.veeam.Remove(u.InstanceUID)
		return true
	case OpVeeamRole:
		r := roles[st.N%len(roles)]
		if strings.EqualFold(r, u.Role) {
			r = roles[(st.N+1)%len(roles)]
		}
		u.Role = r
	case OpVeeamStatus:
		if strings.EqualFold(u.Status, "Disabled") {
			u.Status = "Enabled"
		} else {
			u.Status = "Disabled"
		}
	case OpVeeamEmail:
		e := fmt.Sprintf("op%d.%d@msp.example", st.User, st.N)
		u.Profile.Email = &e
	}
	d.putVeeam(now, u)
	return true
}

// userKey is the oracle's key of the schedule's user i of api.
func (d *directory) userKey(api string, i int) string {
	if api == "vpp" {
		return key(vppSource, strconv.FormatInt(d.vppUser(i).UserID, 10))
	}
	return key(veeamSource, d.veeamUser(i).InstanceUID)
}

// snapshotHistory copies the history for the oracle.
func (d *directory) snapshotHistory() map[string][]record {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string][]record, len(d.history))
	for k, v := range d.history {
		out[k] = append([]record(nil), v...)
	}
	return out
}

// current is every user present now, by key.
func (d *directory) current() map[string]events.User {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]events.User{}
	for _, u := range d.vpp.Users() {
		n := normVPP(u)
		out[key(vppSource, n.ID)] = n
		n2 := normVPP2(u)
		out[key(vpp2Source, n2.ID)] = n2
	}
	for _, u := range d.veeam.Users() {
		n := normVeeam(u)
		out[key(veeamSource, n.ID)] = n
	}
	return out
}
