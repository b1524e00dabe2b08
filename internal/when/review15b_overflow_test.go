package when_test

import (
	"testing"
	"time"

	"github.com/rollcall/rollcall/internal/when"
)

// Review 15b: a duration whose total is exactly 2^63 ns passes the
// "too long" check (total > math.MaxInt64 compares with the float 2^63,
// which is not greater than itself) and is then converted to a negative
// Duration (int64 overflow) without an error. Go's own ParseDuration
// refuses these values as overflows. MAX_AGE / EVENTS_MAX_AGE / REMOVAL_HOLD
// then receive a huge negative value instead of an error naming the variable,
// and --since reports "cannot be negative" for a positive input.
func TestReview15bDurationAt2Pow63(t *testing.T) {
	for _, in := range []string{"9223372036.854775808s", "106751d23h47m16.854775808s", "2562047h47m16.854775808s"} {
		if _, err := time.ParseDuration(in); err == nil {
			t.Logf("%s: Go accepts it", in)
		}
		d, err := when.ParseDuration(in)
		if err == nil && d <= 0 {
			t.Errorf("ParseDuration(%q) = %v, nil error; want a 'too long' error", in, d)
		}
	}
}
