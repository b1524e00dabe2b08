package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// HistogramCount is the number of observations of the series of h whose
// label has value (0 if there is none).
func HistogramCount(t testing.TB, h *prometheus.HistogramVec, label, value string) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return mt.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}
