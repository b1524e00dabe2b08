// Package browsertest drives the audit console (internal/web) in a real
// headless Chromium, against the simulator, the poller with its embedded
// NATS server and the notifier, all in-process: its test is the console's
// end-to-end check (issue 18). It has no code beyond its test.
package browsertest
