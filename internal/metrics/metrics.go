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
	APIRequests      *prometheus.CounterVec
	APIRetries       *prometheus.CounterVec
	AbsenceChecks    *prometheus.CounterVec
	RecordsUncarried *prometheus.GaugeVec
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
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_source_api_requests_total",
			Help: "HTTP requests to the source's API by status code (\"error\" when no response arrived).",
		}, []string{"source", "code"}),
		APIRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_source_api_retries_total",
			Help: "Failed API requests the source client retried within a run.",
		}, []string{"source"}),
		AbsenceChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_source_absence_checks_total",
			Help: "Users missing from a complete snapshot, by how their absence was checked (lookup, snapshot) and what was found (absent: retired; present: kept; unresolved: kept until a later run tells).",
		}, []string{"source", "method", "outcome"}),
		RecordsUncarried: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_source_records_uncarried",
			Help: "Users the source's last run left out because their events or record are too large to store even with the raw record cut.",
		}, []string{"source"}),
	}
	reg.MustRegister(m.SourceHealthy, m.Runs, m.RunDuration, m.UsersTracked, m.LastSuccess, m.TokenExpiry, m.RemovalsHeld,
		m.EventsPublished, m.EventsDuplicated, m.APIRequests, m.APIRetries, m.AbsenceChecks, m.RecordsUncarried)
	return m
}

// API is one source's view of the API metrics; it satisfies httpx.Observer.
type API struct {
	requests *prometheus.CounterVec
	retries  prometheus.Counter
}

// API returns the observer a source client reports its requests to.
func (m *Poller) API(source string) *API {
	return &API{requests: m.APIRequests.MustCurryWith(prometheus.Labels{"source": source}), retries: m.APIRetries.WithLabelValues(source)}
}

// Request counts one request by status code.
func (a *API) Request(code string) { a.requests.WithLabelValues(code).Inc() }

// Retry counts one retry.
func (a *API) Retry() { a.retries.Inc() }

// Notifier holds the notifier's metrics, labelled by sink name.
type Notifier struct {
	Deliveries      *prometheus.CounterVec
	DeliveryLatency *prometheus.HistogramVec
	SendDuration    *prometheus.HistogramVec
	DeadLetters     *prometheus.CounterVec
	Pending         *prometheus.GaugeVec
	AckPending      *prometheus.GaugeVec
}

// Delivery outcomes, the values of rollcall_sink_deliveries_total's outcome
// label.
const (
	Delivered    = "delivered"
	Retried      = "retried"
	DeadLettered = "dead_lettered"
)

// NewNotifier creates the notifier metrics and registers them with reg.
func NewNotifier(reg prometheus.Registerer) *Notifier {
	m := &Notifier{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_sink_deliveries_total",
			Help: "Delivery attempts per sink by outcome: delivered, retried (failed, will be tried again), dead_lettered.",
		}, []string{"sink", "outcome"}),
		DeliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rollcall_sink_delivery_latency_seconds",
			Help:    "Time from an event being stored on the stream to the sink accepting it, retries included.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"sink"}),
		SendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rollcall_sink_send_duration_seconds",
			Help:    "Duration of one delivery attempt to the sink, whatever its outcome.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 13),
		}, []string{"sink"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rollcall_sink_dead_letters_total",
			Help: "Events the sink could not deliver, stored on the dead-letter stream.",
		}, []string{"sink"}),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_sink_pending_messages",
			Help: "Events on the stream the sink's consumer has not yet received.",
		}, []string{"sink"}),
		AckPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rollcall_sink_ack_pending_messages",
			Help: "Events the sink's consumer has received and not yet settled.",
		}, []string{"sink"}),
	}
	reg.MustRegister(m.Deliveries, m.DeliveryLatency, m.SendDuration, m.DeadLetters, m.Pending, m.AckPending)
	return m
}
