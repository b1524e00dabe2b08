// Package logging builds the services' slog loggers from LOG_FORMAT and
// LOG_LEVEL.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing format ("text" or "json") at level ("debug",
// "info", "warn", "error") to w.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(contextHandler{slog.NewTextHandler(w, opts)}), nil
	case "json":
		return slog.New(contextHandler{slog.NewJSONHandler(w, opts)}), nil
	}
	return nil, fmt.Errorf("LOG_FORMAT %q: want text or json", format)
}
