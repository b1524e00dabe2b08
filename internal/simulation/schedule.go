package simulation

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Kind is what a step of a schedule does; the fault kinds are counted in
// the report.
type Kind string

// Step kinds.
const (
	// Directory changes, applied at once or between two pages of a sweep.
	KindChange          Kind = "change"
	KindChangeMidSweep  Kind = "change-between-pages"
	KindAPIError        Kind = "api-5xx"
	KindAPIThrottle     Kind = "api-429-retry-after"
	KindAPITimeout      Kind = "api-timeout"
	KindAPITruncated    Kind = "api-truncated-page"
	KindAPIDrift        Kind = "api-paging-drift"
	KindAPIBatchExpired Kind = "api-batch-token-expired"
	KindTokenExpiry     Kind = "api-token-expiry"
	KindLookupFailure   Kind = "api-lookup-failure"
	KindPollerCrash     Kind = "poller-crash"
	KindPollerKill      Kind = "poller-sigkill"
	// A second poller replica runs beside the first for a while; then one
	// of the two stops. Leases hand the sources over, and the replica that
	// stops polling must notice the other's writes when it polls again.
	KindPollerReplica Kind = "poller-second-replica"
	KindNotifierCrash Kind = "notifier-crash"
	KindNATSRestart   Kind = "nats-restart"
	KindSinkOutage    Kind = "sink-outage"
	// The sink answers 503 to one user's events only, for a while: the
	// other users' deliveries must go on.
	KindSinkUserFailure Kind = "sink-user-failure"
	// A message that is not an event on the event stream (hundreds of kB
	// of invalid UTF-8): it must be dead-lettered and block nothing.
	KindPoisonMessage Kind = "poison-message"
)

// Op is a directory change.
type Op string

// Directory changes.
const (
	OpVPPRegister   Op = "vpp-register"   // a new user, Registered
	OpVPPAssociate  Op = "vpp-associate"  // Registered → Associated
	OpVPPRetire     Op = "vpp-retire"     // → Retired
	OpVPPReregister Op = "vpp-reregister" // back to Registered
	OpVPPEmail      Op = "vpp-email"
	OpVPPDelete     Op = "vpp-delete" // gone from the listing
	OpVeeamCreate   Op = "veeam-create"
	OpVeeamDelete   Op = "veeam-delete"
	OpVeeamRole     Op = "veeam-role"
	OpVeeamStatus   Op = "veeam-status"
	OpVeeamEmail    Op = "veeam-email"
	OpVeeamRecreate Op = "veeam-recreate" // a deleted user comes back
)

// Step is one thing a schedule does at a moment.
type Step struct {
	At   time.Duration // from the start of the schedule
	Kind Kind
	API  string        // "vpp" or "veeam", for API faults and changes
	Op   Op            // for changes
	User int           // which user a change is about (an index the schedule assigned)
	Page int           // for a change between pages and page faults: the 1-based page
	N    int           // times a fault repeats; a value a change sets
	D    time.Duration // how long (outage, delay, restart gap)
	// Point is where a poller crash happens (a poller.Fault* point).
	Point string
}

func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6s %s", s.At.Round(time.Millisecond), s.Kind)
	if s.API != "" {
		fmt.Fprintf(&b, " api=%s", s.API)
	}
	if s.Op != "" {
		fmt.Fprintf(&b, " op=%s user=%d", s.Op, s.User)
	}
	if s.Page > 0 {
		fmt.Fprintf(&b, " page=%d", s.Page)
	}
	if s.N > 0 {
		fmt.Fprintf(&b, " n=%d", s.N)
	}
	if s.D > 0 {
		fmt.Fprintf(&b, " for=%s", s.D)
	}
	if s.Point != "" {
		fmt.Fprintf(&b, " at=%s", s.Point)
	}
	return b.String()
}

// Schedule is everything one seed decides: the directories' sizes, how the
// pipeline is configured and what happens when. The same seed gives the
// same schedule.
type Schedule struct {
	Seed       uint64
	VPPUsers   int
	VeeamUsers int
	VPPBatch   int
	VeeamPage  int
	// VeeamLogin uses a username and password (tokens that expire) instead
	// of an API key.
	VeeamLogin bool
	// Poll intervals, and how often VPP lists everything.
	Interval     time.Duration
	FullSync     time.Duration
	GuardMin     int
	GuardRatio   float64
	GuardHold    time.Duration
	MaxAttempts  int  // notifier deliveries before a dead letter
	Process      bool // the poller is a child process, killed with SIGKILL
	Length       time.Duration
	Steps        []Step
	vppNext      int // user indexes handed out so far
	veeamNext    int
	vppStatus    map[int]string
	veeamPresent map[int]bool
	rng          *rand.Rand
}

// NewSchedule derives a schedule from seed. process allows schedules that
// run the poller as a child process (they need its binary).
func NewSchedule(seed uint64, process bool) *Schedule {
	r := rand.New(rand.NewPCG(seed, 0x5eed5eed))
	s := &Schedule{
		Seed:         seed,
		VPPUsers:     8 + r.IntN(20),
		VeeamUsers:   8 + r.IntN(20),
		VPPBatch:     2 + r.IntN(5),
		VeeamPage:    2 + r.IntN(5),
		VeeamLogin:   r.IntN(3) == 0,
		Interval:     time.Duration(80+r.IntN(120)) * time.Millisecond,
		GuardMin:     2 + r.IntN(6),
		GuardRatio:   0.2 + 0.1*float64(r.IntN(4)),
		GuardHold:    time.Duration(300+r.IntN(900)) * time.Millisecond,
		MaxAttempts:  []int{4, 50, 1000}[r.IntN(3)],
		Process:      process && r.IntN(6) == 0,
		Length:       time.Duration(2000+r.IntN(2000)) * time.Millisecond,
		vppStatus:    map[int]string{},
		veeamPresent: map[int]bool{},
		rng:          r,
	}
	s.FullSync = s.Interval * time.Duration(2+r.IntN(3))
	for i := range s.VPPUsers {
		s.vppStatus[i] = []string{"registered", "associated", "associated", "retired"}[i%4]
	}
	s.vppNext = s.VPPUsers
	for i := range s.VeeamUsers {
		s.veeamPresent[i] = true
	}
	s.veeamNext = s.VeeamUsers
	n := 30 + r.IntN(50)
	for range n {
		s.Steps = append(s.Steps, s.step(time.Duration(r.Int64N(int64(s.Length)))))
	}
	sortSteps(s.Steps)
	s.rng = nil
	return s
}

func sortSteps(steps []Step) {
	for i := 1; i < len(steps); i++ {
		for j := i; j > 0 && steps[j].At < steps[j-1].At; j-- {
			steps[j], steps[j-1] = steps[j-1], steps[j]
		}
	}
}

// step draws one step. Changes are drawn against the schedule's own model
// of the directory, so that most of them apply to a user in a state the
// change makes sense for; run time may still find otherwise (a change
// between pages waits for its page), and a change that no longer applies
// is skipped.
func (s *Schedule) step(at time.Duration) Step {
	r := s.rng
	st := Step{At: at}
	switch x := r.IntN(100); {
	case x < 45:
		st.Kind = KindChange
		s.change(&st)
	case x < 60:
		st.Kind = KindChangeMidSweep
		st.API = "veeam"
		st.Page = 2 + r.IntN(3)
		s.veeamChange(&st, true)
	case x < 64:
		st.Kind, st.API, st.N = KindAPIError, s.api(), 1+r.IntN(3)
	case x < 66:
		st.Kind, st.API, st.N = KindAPIThrottle, s.api(), 1
	case x < 68:
		st.Kind, st.API = KindAPITimeout, s.api()
	case x < 71:
		st.Kind, st.API, st.Page = KindAPITruncated, s.api(), 1+r.IntN(3)
	case x < 74:
		st.Kind, st.API, st.Page = KindAPIDrift, "veeam", 2+r.IntN(3)
	case x < 76:
		st.Kind, st.API = KindAPIBatchExpired, "vpp"
	case x < 78:
		st.Kind, st.API = KindTokenExpiry, "veeam"
	case x < 82:
		st.Kind, st.API, st.N = KindLookupFailure, s.api(), 1+r.IntN(4)
	case x < 88:
		st.Kind = KindPollerCrash
		st.Point = []string{"before-publish", "mid-publish", "before-write", "mid-write", "before-source-write"}[r.IntN(5)]
		st.D = time.Duration(20+r.IntN(300)) * time.Millisecond
	case x < 89:
		st.Kind, st.D, st.N = KindPollerReplica, time.Duration(300+r.IntN(1500))*time.Millisecond, r.IntN(2)
	case x < 91:
		st.Kind, st.D = KindNotifierCrash, time.Duration(20+r.IntN(300))*time.Millisecond
	case x < 94:
		st.Kind, st.D = KindNATSRestart, time.Duration(100+r.IntN(700))*time.Millisecond
	case x < 96:
		st.Kind, st.D, st.API = KindSinkUserFailure, time.Duration(200+r.IntN(2000))*time.Millisecond, s.api()
		st.User = r.IntN(8)
	case x < 97:
		st.Kind, st.N = KindPoisonMessage, 1+r.IntN(800)
	default:
		st.Kind, st.D = KindSinkOutage, time.Duration(50+r.IntN(1500))*time.Millisecond
	}
	if s.Process && (st.Kind == KindPollerCrash || st.Kind == KindPollerReplica) {
		st.Kind, st.Point, st.N = KindPollerKill, "", 0
	}
	return st
}

func (s *Schedule) api() string {
	if s.rng.IntN(2) == 0 {
		return "vpp"
	}
	return "veeam"
}

func (s *Schedule) change(st *Step) {
	if s.rng.IntN(2) == 0 {
		st.API = "vpp"
		s.vppChange(st)
		return
	}
	st.API = "veeam"
	s.veeamChange(st, false)
}

func (s *Schedule) vppChange(st *Step) {
	r := s.rng
	pick := func(status string) (int, bool) {
		var c []int
		for i := range s.vppNext {
			if s.vppStatus[i] == status {
				c = append(c, i)
			}
		}
		if len(c) == 0 {
			return 0, false
		}
		return c[r.IntN(len(c))], true
	}
	var ok bool
	switch r.IntN(8) {
	case 0, 1:
		if st.User, ok = pick("registered"); ok {
			st.Op, s.vppStatus[st.User] = OpVPPAssociate, "associated"
			return
		}
	case 2:
		if st.User, ok = pick("associated"); ok {
			st.Op, s.vppStatus[st.User] = OpVPPRetire, "retired"
			return
		}
	case 3:
		if st.User, ok = pick("retired"); ok {
			st.Op, s.vppStatus[st.User] = OpVPPReregister, "registered"
			return
		}
	case 4:
		if st.User, ok = pick("associated"); ok {
			st.Op, st.N = OpVPPEmail, r.IntN(1000)
			return
		}
	case 5:
		status := []string{"registered", "associated", "retired"}[r.IntN(3)]
		if st.User, ok = pick(status); ok {
			st.Op, s.vppStatus[st.User] = OpVPPDelete, "deleted"
			return
		}
	}
	st.Op, st.User = OpVPPRegister, s.vppNext
	s.vppStatus[s.vppNext] = "registered"
	s.vppNext++
}

func (s *Schedule) veeamChange(st *Step, midSweep bool) {
	r := s.rng
	var present, gone []int
	for i := range s.veeamNext {
		if s.veeamPresent[i] {
			present = append(present, i)
		} else {
			gone = append(gone, i)
		}
	}
	x := r.IntN(10)
	if midSweep {
		// Between pages, deletions and creations are what shift users
		// across page boundaries.
		x = []int{0, 0, 0, 1, 2, 9}[r.IntN(6)]
	}
	switch {
	case len(present) > 0 && x < 3:
		st.Op, st.User = OpVeeamDelete, present[r.IntN(len(present))]
		s.veeamPresent[st.User] = false
		return
	case len(gone) > 0 && x < 4:
		st.Op, st.User = OpVeeamRecreate, gone[r.IntN(len(gone))]
		s.veeamPresent[st.User] = true
		return
	case len(present) > 0 && x < 6:
		st.Op, st.User, st.N = OpVeeamRole, present[r.IntN(len(present))], r.IntN(5)
		return
	case len(present) > 0 && x < 7:
		st.Op, st.User = OpVeeamStatus, present[r.IntN(len(present))]
		return
	case len(present) > 0 && x < 8:
		st.Op, st.User, st.N = OpVeeamEmail, present[r.IntN(len(present))], r.IntN(1000)
		return
	}
	st.Op, st.User = OpVeeamCreate, s.veeamNext
	s.veeamPresent[s.veeamNext] = true
	s.veeamNext++
}

// String prints the whole schedule, a step a line.
func (s *Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: vpp %d users (batch %d), veeam %d users (page %d, login %v), interval %s, full sync %s, guard min %d ratio %.1f hold %s, max attempts %d, poller process %v, %d steps over %s\n",
		s.Seed, s.VPPUsers, s.VPPBatch, s.VeeamUsers, s.VeeamPage, s.VeeamLogin, s.Interval, s.FullSync, s.GuardMin, s.GuardRatio, s.GuardHold,
		s.MaxAttempts, s.Process, len(s.Steps), s.Length)
	for _, st := range s.Steps {
		b.WriteString(st.String())
		b.WriteByte('\n')
	}
	return b.String()
}
