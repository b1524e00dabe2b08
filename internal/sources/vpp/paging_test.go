package vpp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/sources"
	"github.com/rollcall/rollcall/internal/sources/vpp"
	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// guard bounds a listing that might never end, so that a client without a
// batch cap fails the test instead of hanging it.
func guard(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEndlessListingStops(t *testing.T) {
	for _, tc := range []struct {
		name         string
		users        int
		fault        vpptest.Fault
		maxBatches   int
		wantRequests int
		wantInError  string
	}{
		{
			// 5 users in batches of 2: 3 batches expected, 2×3 + 5 allowed.
			name: "cap from totalCount and the batch size", users: 5, fault: vpptest.Fault{Endless: true},
			wantRequests: 11, wantInError: "totalCount 5 in batches of up to 2 users",
		},
		{
			name: "empty directory that never ends", users: 0, fault: vpptest.Fault{Endless: true},
			wantRequests: 5, wantInError: "totalCount 0",
		},
		{
			name: "MaxBatches without totalCount", users: 5, fault: vpptest.Fault{Endless: true, NoTotalCount: true}, maxBatches: 30,
			wantRequests: 30, wantInError: "MaxBatches",
		},
		{
			name: "MaxBatches below the totalCount cap", users: 5, fault: vpptest.Fault{Endless: true}, maxBatches: 4,
			wantRequests: 4, wantInError: "MaxBatches",
		},
		{
			name: "MaxBatches below totalBatchCount", users: 5, maxBatches: 2,
			wantRequests: 2, wantInError: "MaxBatches",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(tc.users)...)
			s.SetBatchSize(2)
			s.InjectFault(tc.fault)
			h := newClient(t, base, func(c *vpp.Config) { c.MaxBatches = tc.maxBatches })
			_, err := h.client.Snapshot(guard(t), sources.Request{})
			if !errors.Is(err, vpp.ErrPaging) {
				t.Fatalf("err = %v after %d requests, want ErrPaging", err, s.Requests())
			}
			if got := s.Requests(); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			want := fmt.Sprintf("source vpp: batch %d: ", tc.wantRequests)
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.wantInError) {
				t.Errorf("error %q should name source and batch (%q) and say %q", err, want, tc.wantInError)
			}
		})
	}
}

func TestZeroTotalBatchCountCompletes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		users      int
		batchSize  int
		fault      vpptest.Fault
		maxBatches int
		wantPages  int
	}{
		{"empty batch in the middle", 5, 2, vpptest.Fault{ZeroTotalBatchCount: true, EmptyBatch: 2}, 0, 4},
		{"empty batch, no totalCount either", 5, 2, vpptest.Fault{ZeroTotalBatchCount: true, NoTotalCount: true, EmptyBatch: 3}, 0, 4},
		{"many batches of one", 40, 1, vpptest.Fault{ZeroTotalBatchCount: true, EmptyBatch: 1}, 0, 41},
		{"exactly MaxBatches", 5, 2, vpptest.Fault{ZeroTotalBatchCount: true, NoTotalCount: true, EmptyBatch: 2}, 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(tc.users)...)
			s.SetBatchSize(tc.batchSize)
			s.InjectFault(tc.fault)
			h := newClient(t, base, func(c *vpp.Config) { c.MaxBatches = tc.maxBatches })
			snap, err := h.client.Snapshot(guard(t), sources.Request{})
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if len(snap.Users) != tc.users || snap.Pages != tc.wantPages || !snap.Complete || snap.Cursor == "" {
				t.Errorf("users=%d pages=%d complete=%v cursor=%q, want %d users in %d pages", len(snap.Users), snap.Pages, snap.Complete, snap.Cursor, tc.users, tc.wantPages)
			}
		})
	}
}

// TestTotalCountCapBoundary pins the cap at its edge: totalCount 1 and a
// batch of one user allow 2×1 + 5 = 7 batches, however many of them are
// empty, and the 7th may be the final one.
func TestTotalCountCapBoundary(t *testing.T) {
	listing := func(batches int) []string {
		bodies := []string{`{"status":0,"totalBatchCount":"0","totalCount":1,"batchToken":"b2","users":[{"userId":1,"status":"Registered"}]}`}
		for i := 2; i < batches; i++ {
			bodies = append(bodies, fmt.Sprintf(`{"status":0,"totalBatchCount":"0","batchToken":"b%d","users":[]}`, i+1))
		}
		return append(bodies, `{"status":0,"totalBatchCount":"0","sinceModifiedToken":"s","users":[]}`)
	}
	for _, tc := range []struct {
		name    string
		batches int
		wantErr bool
	}{
		{"at the cap", 7, false},
		{"one past the cap", 8, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := newScript(t, listing(tc.batches)...)
			h := newClient(t, base)
			snap, err := h.client.Snapshot(guard(t), sources.Request{})
			if tc.wantErr {
				if !errors.Is(err, vpp.ErrPaging) || s.count() != 7 {
					t.Fatalf("err = %v after %d requests, want ErrPaging after 7", err, s.count())
				}
				return
			}
			if err != nil || len(snap.Users) != 1 || snap.Pages != 7 {
				t.Fatalf("users=%d pages=%d err=%v, want 1 user in 7 pages", len(snap.Users), snap.Pages, err)
			}
		})
	}
}

func TestFullSyncRestarts(t *testing.T) {
	const users = 5 // in batches of 2: 3 batches a listing
	refuse := func(batch, times, number int) vpptest.Fault {
		return vpptest.Fault{Batch: batch, Times: times, ErrorNumber: number}
	}
	for _, tc := range []struct {
		name         string
		cursor       string // "" = full sync
		fault        vpptest.Fault
		maxRestarts  int
		wantErr      bool
		wantRequests int
	}{
		{name: "9633 on batch 2 once", fault: refuse(2, 1, vpp.ErrBatchNotRecoverable), wantRequests: 2 + 3},
		{name: "9629 on batch 1 once", fault: refuse(1, 1, vpp.ErrTokenNotApplicable), wantRequests: 1 + 3},
		{name: "9633 on batch 2 every time", fault: refuse(2, 100, vpp.ErrBatchNotRecoverable), wantErr: true, wantRequests: 2 * (1 + 3)},
		{name: "MaxFullRestarts bounds it", fault: refuse(2, 100, vpp.ErrBatchNotRecoverable), maxRestarts: 1, wantErr: true, wantRequests: 2 * (1 + 1)},
		{name: "no restarts when negative", fault: refuse(2, 100, vpp.ErrBatchNotRecoverable), maxRestarts: -1, wantErr: true, wantRequests: 2},
		// The fake refuses a cursor it cannot read with 9633.
		{name: "incremental refused, then the full listing restarted", cursor: "garbage", fault: refuse(2, 1, vpp.ErrBatchNotRecoverable), wantRequests: 1 + 2 + 3},
		{name: "incremental refused, full listing refused every time", cursor: "garbage", fault: refuse(2, 100, vpp.ErrBatchNotRecoverable), wantErr: true, wantRequests: 1 + 2*(1+3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, base := fake(t, makeUsers(users)...)
			s.SetBatchSize(2)
			s.InjectFault(tc.fault)
			h := newClient(t, base, func(c *vpp.Config) { c.MaxFullRestarts = tc.maxRestarts })
			snap, err := h.client.Snapshot(context.Background(), sources.Request{Cursor: tc.cursor})
			if got := s.Requests(); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
				if !snap.Complete || len(snap.Users) != users {
					t.Errorf("complete=%v users=%d, want a complete listing of %d", snap.Complete, len(snap.Users), users)
				}
				if !strings.Contains(h.logs.String(), "level=WARN") || !strings.Contains(h.logs.String(), "restarting it from the beginning") {
					t.Errorf("restart not logged as a warning:\n%s", h.logs)
				}
				return
			}
			var ae *vpp.APIError
			if !errors.As(err, &ae) || !ae.RestartsFull() {
				t.Fatalf("err = %v, want the refusal", err)
			}
			if !strings.Contains(err.Error(), "source vpp: full listing cannot be finished") {
				t.Errorf("error %q should name the source and say what failed", err)
			}
		})
	}
}
