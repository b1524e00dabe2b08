// Package metrics defines rollcall's Prometheus metrics, named by Prometheus
// conventions: a rollcall_ prefix, base units and _total for counters.
// Components take a *Poller (or nil, which records nothing).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Poller holds the poller's metrics.
type Poller struct {
	SourceHealthy    *prometheus.GaugeVec
	Runs             *prometheus.CounterVec
	RunDuration      *prometheus.HistogramVec
	UsersTracked     *prometheus.GaugeVec
	LastSuccess      *prometheus.GaugeVec
	TokenExpiry      *prometheus.GaugeVec
	RemovalsHeld     *prometheus.GaugeVec
	EventsPublished  *prometheus.CounterVec
	EventsDuplicated *prometheus.CounterVec
}

// NewPoller creates the poller metrics and registers them with reg.
func NewPoller(reg prometheus.Registerer) *Poller {
	m := &Poller{
		SourceHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_source_healthy",
			Help: "1 when the source's last run succeeded, 0 when it failed or the source is stopped.",
		}, []string{"source", "kind"}),
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_source_runs_total",
			Help: "Runs per source by outcome (success, failure, stopped).",
		}, []string{"source", "outcome"}),
		RunDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rollcall_source_run_duration_seconds",
			Help:    "Duration of a source run, fetch to commit.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"source"}),
		UsersTracked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_source_users",
			Help: "Users in the source's last complete snapshot.",
		}, []string{"source"}),
		LastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_source_last_success_timestamp_seconds",
			Help: "Unix time of the source's last successful run.",
		}, []string{"source"}),
		TokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_source_token_expiry_timestamp_seconds",
			Help: "Unix time at which the source's credential expires (VPP sToken).",
		}, []string{"source"}),
		RemovalsHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_source_removals_held",
			Help: "Users missing from the directory whose retirement the mass-removal guard is holding back.",
		}, []string{"source"}),
		EventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_events_published_total",
			Help: "Events stored on the stream, by source and type.",
		}, []string{"source", "type"}),
		EventsDuplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_events_duplicate_total",
			Help: "Events the stream dropped as duplicates of an earlier publish (reruns after a crash).",
		}, []string{"source"}),
	}
	reg.MustRegister(m.SourceHealthy, m.Runs, m.RunDuration, m.UsersTracked, m.LastSuccess, m.TokenExpiry, m.RemovalsHeld, m.EventsPublished, m.EventsDuplicated)
	return m
}
