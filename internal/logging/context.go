package logging

import (
	"context"
	"log/slog"
)

type ctxKey struct{}

// With returns ctx carrying attrs (key-value pairs, as slog takes them) that
// every log line written with that context gets, whichever logger writes
// it. The poller puts a run's id here, so that the lines a source client
// logs during the run carry it too without the client knowing about runs.
func With(ctx context.Context, args ...any) context.Context {
	prev, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	r := slog.Record{}
	r.Add(args...)
	attrs := make([]slog.Attr, 0, len(prev)+r.NumAttrs())
	attrs = append(attrs, prev...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	return context.WithValue(ctx, ctxKey{}, attrs)
}

// contextHandler adds the attributes of With to each record.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs, ok := ctx.Value(ctxKey{}).([]slog.Attr); ok {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
