//go:build race

package web

// raceFactor widens time limits under the race detector, which slows
// memory access several times.
const raceFactor = 10
