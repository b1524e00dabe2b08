// Package simulator serves the directory APIs (Apple VPP's getVPPUsersSrv,
// Apple's App and Book Management API v2 /mdm/v2/users, and Veeam's
// /api/v3/users) over HTTP from a seeded directory that changes over time.
// It is built from the same fakes the tests use (vpptest, vpp2test,
// veeamtest), so the demo, the end-to-end tests and the benchmarks all
// drive the real clients against one implementation of each API. Both
// Apple APIs serve one directory, as Apple serves one location: a user
// is listed by its userId on the legacy API and by its clientUserId on v2.
package simulator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
	"github.com/rollcall/rollcall/internal/sources/vpp2/vpp2test"
)

// Paths the simulator serves the APIs under; point VPP_BASE_URL at
// <addr>/mdm, VPP2_BASE_URL at <addr>/mdm/v2 and VEEAM_BASE_URL at <addr>.
const (
	VPPPath  = "/mdm/"
	VPP2Path = "/mdm/v2/"
	// Default credentials, so the demo needs no configuration.
	// DefaultVPPToken has the real sToken shape (base64 of token, expDate,
	// orgName) so that token decoding and expiry reporting work in the demo.
	DefaultVPPToken   = "eyJ0b2tlbiI6InNpbXVsYXRvci10b2tlbiIsImV4cERhdGUiOiIyMDk5LTEyLTMxVDAwOjAwOjAwLTA4MDAiLCJvcmdOYW1lIjoiU2ltdWxhdGVkIFNjaG9vbCBEaXN0cmljdCJ9"
	DefaultVeeamToken = "simulator-veeam-api-key"
)

// Config seeds the directory.
type Config struct {
	Users      int   // users per API beyond the fixtures' own; default 20
	Seed       int64 // random seed for the churn; same seed, same story
	VPPToken   string
	VeeamToken string
}

// Simulator is a changing directory behind both APIs.
type Simulator struct {
	VPP *vpptest.Server
	// VPP2 serves VPP's directory on API v2.
	VPP2  *vpp2test.Server
	Veeam *veeamtest.Server

	mu     sync.Mutex
	rng    *rand.Rand
	nextID int64
	nextVU int
}

// New seeds a simulator with the fixtures' users plus cfg.Users generated
// ones per API.
func New(cfg Config) *Simulator {
	if cfg.VPPToken == "" {
		cfg.VPPToken = DefaultVPPToken
	}
	if cfg.VeeamToken == "" {
		cfg.VeeamToken = DefaultVeeamToken
	}
	if cfg.Users < 0 {
		cfg.Users = 0
	}
	s := &Simulator{
		VPP:    vpptest.NewServer(cfg.VPPToken, vpptest.FixtureUsers()...),
		Veeam:  veeamtest.NewServer(cfg.VeeamToken, veeamtest.FixtureUsers()...),
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed)),
		nextID: 100,
	}
	s.VPP2 = vpp2test.NewServer(cfg.VPPToken, s.VPP)
	statuses := []string{vpptest.StatusRegistered, vpptest.StatusAssociated, vpptest.StatusAssociated}
	for i := 0; i < cfg.Users; i++ {
		u := s.newVPPUser()
		u.Status = statuses[i%len(statuses)]
		if u.Status == vpptest.StatusAssociated {
			u.ItsIDHash = fmt.Sprintf("hash%06d=", u.UserID)
			u.InviteCode, u.InviteURL = "", ""
		}
		s.VPP.Put(u)
		s.Veeam.Put(s.newVeeamUser())
	}
	return s
}

// Handler serves the APIs: VPP under /mdm/, v2 under /mdm/v2/, Veeam under
// /api/v3/, and
// the admin API (fault injection, directory changes; see admin.go) under
// /admin/.
func (s *Simulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(VPPPath, s.VPP)
	mux.Handle(VPP2Path, s.VPP2)
	mux.Handle("/api/v3/", s.Veeam)
	mux.Handle(AdminPath, s.adminHandler())
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "rollcall simulator: VPP at /mdm/getVPPUsersSrv (%d users), the same directory on API v2 at /mdm/v2/users, Veeam at /api/v3/users (%d users), fault injection at /admin/\n",
			len(s.VPP.Users()), len(s.Veeam.Users()))
	})
	return mux
}

var roles = []string{"CompanyOwner", "CompanyAdministrator", "CompanyLocationAdministrator", "CompanyLocationUser", "PortalOperator"}

func (s *Simulator) newVPPUser() vpptest.User {
	s.nextID++
	id := s.nextID
	code := fmt.Sprintf("%032x", id*7919)
	return vpptest.User{
		UserID: id, Email: fmt.Sprintf("person%d@school.example", id), ClientUserIDStr: fmt.Sprintf("client-%d", id),
		Status: vpptest.StatusRegistered, InviteCode: code,
		InviteURL: "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=" + code + "&mt=8",
	}
}

func (s *Simulator) newVeeamUser() veeamtest.User {
	s.nextVU++
	n := s.nextVU
	email := fmt.Sprintf("operator%d@msp.example", n)
	first, last := fmt.Sprintf("Op%d", n), "Erator"
	return veeamtest.User{
		InstanceUID:     fmt.Sprintf("%08x-0000-4000-8000-%012x", s.rng.Uint32(), n),
		OrganizationUID: fmt.Sprintf("0rg%05d-0000-4000-8000-000000000000", n%7),
		UserName:        fmt.Sprintf("operator%d", n), Status: "Enabled", Role: roles[s.rng.IntN(len(roles))],
		Profile: veeamtest.Profile{FirstName: &first, LastName: &last, Email: &email},
	}
}

// Churn makes one random change in each API and describes them.
func (s *Simulator) Churn() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []string{s.churnVPP(), s.churnVeeam()}
}

func (s *Simulator) churnVPP() string {
	users := s.VPP.Users()
	pick := func(status string) (vpptest.User, bool) {
		var c []vpptest.User
		for _, u := range users {
			if u.Status == status {
				c = append(c, u)
			}
		}
		if len(c) == 0 {
			return vpptest.User{}, false
		}
		return c[s.rng.IntN(len(c))], true
	}
	switch s.rng.IntN(5) {
	case 0, 1:
		if u, ok := pick(vpptest.StatusRegistered); ok {
			u.Status, u.ItsIDHash, u.InviteCode, u.InviteURL = vpptest.StatusAssociated, fmt.Sprintf("hash%06d=", u.UserID), "", ""
			s.VPP.Put(u)
			return fmt.Sprintf("vpp: user %d associated", u.UserID)
		}
	case 2:
		if u, ok := pick(vpptest.StatusAssociated); ok {
			u.Status = vpptest.StatusRetired
			s.VPP.Put(u)
			return fmt.Sprintf("vpp: user %d retired", u.UserID)
		}
	case 3:
		if u, ok := pick(vpptest.StatusRetired); ok {
			s.VPP.Remove(u.UserID)
			return fmt.Sprintf("vpp: user %d removed", u.UserID)
		}
	}
	u := s.newVPPUser()
	s.VPP.Put(u)
	return fmt.Sprintf("vpp: user %d registered", u.UserID)
}

func (s *Simulator) churnVeeam() string {
	users := s.Veeam.Users()
	if len(users) == 0 || s.rng.IntN(5) == 0 {
		u := s.newVeeamUser()
		s.Veeam.Put(u)
		return "veeam: user " + u.UserName + " created"
	}
	u := users[s.rng.IntN(len(users))]
	switch s.rng.IntN(4) {
	case 0:
		old := u.Role
		for u.Role == old {
			u.Role = roles[s.rng.IntN(len(roles))]
		}
		s.Veeam.Put(u)
		return fmt.Sprintf("veeam: user %s role %s → %s", u.UserName, old, u.Role)
	case 1:
		if strings.EqualFold(u.Status, "Disabled") {
			u.Status = "Enabled"
		} else {
			u.Status = "Disabled"
		}
		s.Veeam.Put(u)
		return fmt.Sprintf("veeam: user %s %s", u.UserName, u.Status)
	case 2:
		email := fmt.Sprintf("%s.%d@msp.example", u.UserName, s.rng.IntN(1000))
		u.Profile.Email = &email
		s.Veeam.Put(u)
		return fmt.Sprintf("veeam: user %s email changed", u.UserName)
	}
	s.Veeam.Remove(u.InstanceUID)
	return "veeam: user " + u.UserName + " removed"
}

// Run churns every interval until ctx ends, reporting each change to report
// (which may be nil).
func (s *Simulator) Run(ctx context.Context, every time.Duration, report func(string)) {
	if every <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, c := range s.Churn() {
				if report != nil {
					report(c)
				}
			}
		}
	}
}
