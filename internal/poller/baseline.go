package poller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rollcall/rollcall/internal/bus"
	"github.com/rollcall/rollcall/pkg/events"
)

// scrubBaseline removes the secrets an earlier release may have stored in
// a source's baseline object (Veeam passwords, VPP invitation codes in
// raw), once: a baseline marked bus.BaselineScrubbed is left alone, so the cost
// is one read of the metadata per source and process. A baseline with
// secrets is stored again without them, keeping its original time
// (bus.BaselineStored); its old chunks are purged with it.
func (p *Poller) scrubBaseline(ctx context.Context, name string, log *slog.Logger) error {
	if p.h.Baselines == nil {
		return nil
	}
	info, err := p.h.Baselines.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("source %s: read the baseline's metadata: %w", name, err)
	}
	if info.Metadata[bus.BaselineScrubbed] != "" {
		return nil
	}
	b, err := p.h.Baselines.GetBytes(ctx, name)
	if err != nil {
		return fmt.Errorf("source %s: read the baseline: %w", name, err)
	}
	meta := jetstream.ObjectMeta{Name: name, Description: info.Description, Headers: info.Headers,
		Metadata: maps.Clone(info.Metadata), Opts: &jetstream.ObjectMetaOptions{ChunkSize: baselineChunkSize}}
	if meta.Metadata == nil {
		meta.Metadata = map[string]string{}
	}
	meta.Metadata[bus.BaselineScrubbed] = "1"
	// Either update below gives the object a new time; replay's --as-of
	// needs the first one.
	if meta.Metadata[bus.BaselineStored] == "" {
		meta.Metadata[bus.BaselineStored] = info.ModTime.UTC().Format(time.RFC3339Nano)
	}
	clean, err := events.ScrubRaw(b)
	if err != nil || bytes.Equal(clean, b) {
		// Nothing to remove (or not JSON, which replay refuses anyway):
		// mark it, so the next start does not read it again.
		if err := p.h.Baselines.UpdateMeta(ctx, name, meta); err != nil {
			return fmt.Errorf("source %s: mark the baseline scrubbed: %w", name, err)
		}
		return nil
	}
	if _, err := p.h.Baselines.Put(ctx, meta, bytes.NewReader(clean)); err != nil {
		return fmt.Errorf("source %s: store the scrubbed baseline: %w", name, err)
	}
	log.Warn("the baseline an earlier release stored held secrets in raw records; it is stored again without them",
		"bytes_before", len(b), "bytes_after", len(clean))
	return nil
}
