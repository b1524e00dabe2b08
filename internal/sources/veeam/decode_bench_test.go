package veeam

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// pageBody is one full page (MaxPageSize users) as the fake serves it.
func pageBody(b *testing.B) []byte {
	b.Helper()
	users := make([]veeamtest.User, MaxPageSize)
	for i := range users {
		email := fmt.Sprintf("operator%d@msp.example", i)
		first, last := fmt.Sprintf("Op%d", i), "Erator"
		users[i] = veeamtest.User{
			InstanceUID:     fmt.Sprintf("%08x-0000-4000-8000-%012x", i*7919, i),
			OrganizationUID: fmt.Sprintf("0rg%05d-0000-4000-8000-000000000000", i%7),
			UserName:        fmt.Sprintf("operator%d", i), Status: "Enabled", Role: "CompanyAdministrator",
			Profile: veeamtest.Profile{FirstName: &first, LastName: &last, Email: &email},
		}
	}
	srv := veeamtest.NewServer("key", users...)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/api/v3/users?limit=%d&offset=0", MaxPageSize), nil)
	req.Header.Set("Authorization", "Bearer key")
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("fake answered %d", rec.Code)
	}
	return rec.Body.Bytes()
}

// BenchmarkDecodePage decodes and normalises one page of 500 users.
func BenchmarkDecodePage(b *testing.B) {
	body := pageBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		p, err := decodePage("veeam", 1, body)
		if err != nil {
			b.Fatal(err)
		}
		n += len(p.users)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "users/s")
}
