package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/syncbuf"
)

// Issue 18: the demo serves the audit console and prints its URL, and the
// console finds a user of the simulator's directory by e-mail.
func TestDemoServesTheConsole(t *testing.T) {
	stdout, stderr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"demo", "-churn", "300ms"}, stdout, stderr) }()
	defer func() { cancel(); <-done }()
	re := regexp.MustCompile(`audit console at (http://\S+)`)
	var url string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no console URL within 30s:\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The fixture user person118 is in the directory from the start; the
	// console's index may take a moment to load it.
	for {
		body, status := get(t, url+"search?q=person118%40school.example")
		if status == http.StatusOK && strings.Contains(body, "person118@school.example") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console's search did not find person118 within 30s: %d\n%s", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err.Error(), 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}
