package slack

import "time"

// SetAfterFunc replaces the timer that ends a digest's window, so that a
// test with a fake clock decides when digests are posted. Call it before
// the first Send.
func SetAfterFunc(s *Sink, f func(time.Duration, func())) { s.afterFunc = f }

// Waiting is how many events the open digest holds.
func Waiting(s *Sink) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if s.open != nil {
		for _, m := range s.open.members {
			if !m.gone {
				n++
			}
		}
	}
	return n
}
