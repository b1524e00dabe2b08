package vpp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/vpp/vpptest"
)

// batchBody is one full getVPPUsersSrv batch as the fake serves it:
// DefaultBatchSize users, two thirds associated, with invite URLs.
func batchBody(b *testing.B) []byte {
	b.Helper()
	users := make([]vpptest.User, vpptest.DefaultBatchSize)
	for i := range users {
		id := int64(1000 + i)
		code := fmt.Sprintf("%032x", id*7919)
		users[i] = vpptest.User{UserID: id, Email: fmt.Sprintf("person%d@school.example", id), ClientUserIDStr: fmt.Sprintf("client-%d", id),
			Status: vpptest.StatusRegistered, InviteCode: code, InviteURL: "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=" + code + "&mt=8"}
		if i%3 != 0 {
			users[i].Status, users[i].ItsIDHash, users[i].InviteCode, users[i].InviteURL = vpptest.StatusAssociated, fmt.Sprintf("hash%06d=", id), "", ""
		}
	}
	srv := vpptest.NewServer("tok", users...)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mdm/getVPPUsersSrv", strings.NewReader(`{"sToken":"tok","includeRetired":1}`)))
	if rec.Code != http.StatusOK {
		b.Fatalf("fake answered %d", rec.Code)
	}
	return rec.Body.Bytes()
}

// BenchmarkDecodeResponse decodes one batch of 100 users; users/s is the
// figure to compare with the pages a run fetches.
func BenchmarkDecodeResponse(b *testing.B) {
	body := batchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r, err := decodeResponse(body)
		if err != nil {
			b.Fatal(err)
		}
		n += len(r.Users)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "users/s")
}

// BenchmarkDecodeNormalise is a batch as the client turns it into
// events.User values.
func BenchmarkDecodeNormalise(b *testing.B) {
	body := batchBody(b)
	c := &Client{name: "vpp"}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := decodeResponse(body)
		if err != nil {
			b.Fatal(err)
		}
		for _, u := range r.Users {
			_ = c.normalise(u)
		}
	}
}
