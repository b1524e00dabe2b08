package notifier

import (
	"math"
	"strings"
	"testing"
)

// review19: hasLetter, which skips making the id while the set is empty,
// answers what has(DeadLetterMsgID(…)) answers, for every kind of event
// id (empty, hashed for length or a line break) and edge sequences, with
// the set empty, holding the id, and holding only other ids.
func TestReview19HoldsHasLetterIsHasOfTheID(t *testing.T) {
	cases := []struct {
		id, sink string
		seq      uint64
		epoch    int64
	}{
		{"", "s", 1, 1},
		{strings.Repeat("e", 65), "webhook", math.MaxUint64, math.MaxInt64},
		{"a\nb", "slack", 0, -1},
		{"01JABC", "w.x", 7, 0},
	}
	for _, c := range cases {
		d := &deadSet{ids: map[string]struct{}{}}
		if d.hasLetter(c.id, c.sink, c.seq, c.epoch) {
			t.Errorf("%q: empty set has it", c.id)
		}
		d.add("other.s.1.1")
		if d.hasLetter(c.id, c.sink, c.seq, c.epoch) != d.has(DeadLetterMsgID(c.id, c.sink, c.seq, c.epoch)) || d.hasLetter(c.id, c.sink, c.seq, c.epoch) {
			t.Errorf("%q: found among other ids", c.id)
		}
		d.add(DeadLetterMsgID(c.id, c.sink, c.seq, c.epoch))
		if !d.hasLetter(c.id, c.sink, c.seq, c.epoch) {
			t.Errorf("%q: not found once added", c.id)
		}
		if d.hasLetter(c.id, c.sink, c.seq+1, c.epoch) {
			t.Errorf("%q: another sequence found", c.id)
		}
	}
}
