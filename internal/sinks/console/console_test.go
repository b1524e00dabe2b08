package console_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/rollcall/rollcall/internal/sinks/console"
	"github.com/rollcall/rollcall/internal/sinks/sinktest"
	"github.com/rollcall/rollcall/pkg/events"
)

// syncBuffer lets the suite read while sends may still be writing.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// The notifier depends on every sink satisfying this interface.
var _ sinktest.Sink = (*console.Sink)(nil)

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func decodeLines(t *testing.T, out string) []events.Event {
	t.Helper()
	var got []events.Event
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q is not a CloudEvent: %v", sc.Text(), err)
		}
		got = append(got, e)
	}
	return got
}

func TestConformance(t *testing.T) {
	var buf *syncBuffer
	sinktest.RunConformance(t, sinktest.Harness{
		NewSink: func(t *testing.T, _ string) sinktest.Sink {
			buf = &syncBuffer{}
			return console.New(console.Config{Out: buf})
		},
		Delivered: func(t *testing.T) []events.Event { return decodeLines(t, buf.String()) },
	})
}

func TestOneLinePerEvent(t *testing.T) {
	var buf bytes.Buffer
	s := console.New(console.Config{Out: &buf})
	if s.Name() != "console" {
		t.Errorf("default name %q", s.Name())
	}
	fx := sinktest.Fixtures(t)
	for _, f := range fx {
		if err := s.Send(context.Background(), f.Event); err != nil {
			t.Fatal(err)
		}
	}
	out := buf.String()
	if n := strings.Count(out, "\n"); n != len(fx) || !strings.HasSuffix(out, "\n") {
		t.Fatalf("%d newlines for %d events:\n%s", n, len(fx), out)
	}
	got := decodeLines(t, out)
	for i, f := range fx {
		if got[i].ID() != f.Event.ID() || got[i].Type() != f.Event.Type() {
			t.Errorf("line %d: %s %s, want %s %s", i, got[i].ID(), got[i].Type(), f.Event.ID(), f.Event.Type())
		}
		if err := events.Validate(got[i]); err != nil {
			t.Errorf("line %d: %v", i, err)
		}
		if !bytes.Equal(got[i].Data(), f.Event.Data()) {
			t.Errorf("line %d: data %s, want %s", i, got[i].Data(), f.Event.Data())
		}
	}
	// Structured mode: data is embedded as JSON, not a string or base64.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw["data"], []byte("{")) || string(raw["specversion"]) != `"1.0"` || string(raw["sourcekind"]) != `"vpp"` {
		t.Errorf("not CloudEvents structured JSON: %s", strings.SplitN(out, "\n", 2)[0])
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	s := console.New(console.Config{Name: "audit", Out: failWriter{}})
	if s.Name() != "audit" {
		t.Errorf("name %q", s.Name())
	}
	err := s.Send(context.Background(), sinktest.NewEvent(t))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Send: %v, want the write error", err)
	}
}
