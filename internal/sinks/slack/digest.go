package slack

import (
	"context"
	"fmt"

	"github.com/rollcall/rollcall/pkg/events"
)

// admit counts e in the sliding window and decides how it goes out: nil
// for a message of its own, else the digest it joined and its place there.
func (s *Sink) admit(e events.Event) (*digest, *member) {
	if s.threshold < 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	cut := now.Add(-s.window)
	i := 0
	for i < len(s.arrivals) && !s.arrivals[i].After(cut) {
		i++
	}
	s.arrivals = append(s.arrivals[i:], now)
	if s.open == nil && len(s.arrivals) <= s.threshold {
		return nil, nil
	}
	d := s.open
	if d == nil {
		d = &digest{done: make(chan struct{})}
		s.open = d
		s.afterFunc(s.window, func() { s.flush(d) })
	}
	m := &member{e: e}
	d.members = append(d.members, m)
	return d, m
}

// await waits for d's post, or for ctx to end; then it takes m out of d
// unless the post already has it.
func (s *Sink) await(ctx context.Context, d *digest, m *member) error {
	select {
	case <-d.done:
		return d.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	taken := d.taken
	if !taken {
		m.gone = true
	}
	s.mu.Unlock()
	if taken {
		// Being posted, or posted: wait for what happened (the post is
		// bounded by the sink's timeout) rather than report a failure and
		// have the notifier post the event a second time. A stop then
		// takes up to that timeout beyond its grace, but a channel never
		// sees the same change twice for it.
		<-d.done
		return d.err
	}
	return fmt.Errorf("%s: waiting for the digest: %w", s.label(), ctx.Err())
}

// flush posts d, at the end of its window, with the events still in it,
// and hands the outcome to their Sends.
func (s *Sink) flush(d *digest) {
	s.mu.Lock()
	if d.taken { // flushed already (Flush, then its window's end)
		s.mu.Unlock()
		return
	}
	if s.open == d {
		s.open = nil
	}
	d.taken = true
	evs := make([]events.Event, 0, len(d.members))
	for _, m := range d.members {
		if !m.gone {
			evs = append(evs, m.e)
		}
	}
	d.members = nil
	s.mu.Unlock()
	defer close(d.done)
	switch len(evs) {
	case 0:
		return
	case 1:
		// Render succeeded in Send; it is deterministic.
		m, err := Render(evs[0])
		if err == nil {
			err = s.Post(context.Background(), m)
		}
		d.err = err
		return
	}
	if err := s.Post(context.Background(), RenderDigest(evs, s.users)); err != nil {
		d.err = fmt.Errorf("%s: digest of %d events: %w", s.label(), len(evs), err)
	}
}

// Flush posts the digest being collected now rather than at the end of its
// window. The notifier calls it when it stops: the events waiting for the
// digest are then delivered within the shutdown grace instead of being cut
// off and sent again by the next run.
func (s *Sink) Flush() {
	s.mu.Lock()
	d := s.open
	s.mu.Unlock()
	if d != nil {
		go s.flush(d)
	}
}
