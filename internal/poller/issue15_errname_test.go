package poller_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/rollcall/rollcall/internal/poller"
	"github.com/rollcall/rollcall/internal/sources/veeam/veeamtest"
)

// Issue 15 point 5: a failed listing's error names its source once: the
// clients' errors start with "source veeam:", and the poller no longer
// wraps them in another ("source veeam: snapshot: source veeam: …").
func TestIssue15SnapshotErrorNamesSourceOnce(t *testing.T) {
	e := setup(t, poller.Config{})
	e.veeam.InjectFault(veeamtest.Fault{Status: http.StatusBadRequest, Times: 5})
	_, err := e.p.RunOnce(context.Background(), "veeam")
	if err == nil {
		t.Fatal("the run succeeded")
	}
	if n := strings.Count(err.Error(), "source veeam"); n != 1 {
		t.Errorf("%q names the source %d times", err, n)
	}
}
