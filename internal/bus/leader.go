package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderReads wraps a bucket so that Get reads the key from the leader of
// the bucket's stream. nats.go reads KV keys with direct gets, which any
// replica answers, a follower that has not applied the latest writes
// included: NATS promises no read-your-writes for them. The poller reads
// the revision it then writes with compare-and-set, and the mark of a run
// that did not commit (state.Source.Publishing): a stale copy of either
// fails the next write, or, worse, hides the mark, so that the events of
// the uncommitted run are published again under new ids. The leader has
// every write it acknowledged. On a single server both are the same.
func LeaderReads(nc *nats.Conn, kv jetstream.KeyValue) jetstream.KeyValue {
	return leaderKV{KeyValue: kv, nc: nc}
}

type leaderKV struct {
	jetstream.KeyValue
	nc *nats.Conn
}

// msgGetResponse is the answer to $JS.API.STREAM.MSG.GET.
type msgGetResponse struct {
	Message *storedMsg `json:"message,omitempty"`
	Error   *struct {
		Code        int    `json:"code"`
		ErrorCode   int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// errNoMessage is JetStream's error code for "no message found".
const errNoMessage = 10037

// LastRevision is the revision of the last write to the keys matching
// keys (a KV key filter such as "vpp.>"), as the stream leader has it; 0
// when there is none. A watch (an ordered consumer) may be served by a
// replica that is behind; comparing what it delivered with this tells.
func (k leaderKV) LastRevision(ctx context.Context, keys string) (uint64, error) {
	m, err := k.last(ctx, keys)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

func (k leaderKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	m, err := k.last(ctx, key)
	if err != nil {
		return nil, err
	}
	e := entry{bucket: k.Bucket(), key: key, value: m.Data, rev: m.Sequence, created: m.Time, op: jetstream.KeyValuePut}
	if h := m.Header; len(h) > 0 {
		switch {
		case bytes.Contains(h, []byte("KV-Operation: DEL")):
			e.op = jetstream.KeyValueDelete
		case bytes.Contains(h, []byte("KV-Operation: PURGE")):
			e.op = jetstream.KeyValuePurge
		}
	}
	if e.op != jetstream.KeyValuePut {
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil
}

// storedMsg is a message as $JS.API.STREAM.MSG.GET returns it.
type storedMsg struct {
	Subject  string    `json:"subject"`
	Sequence uint64    `json:"seq"`
	Header   []byte    `json:"hdrs,omitempty"`
	Data     []byte    `json:"data,omitempty"`
	Time     time.Time `json:"time"`
}

// last reads the last message of the keys matching key from the leader.
func (k leaderKV) last(ctx context.Context, key string) (*storedMsg, error) {
	stream := "KV_" + k.Bucket()
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + k.Bucket() + "." + key})
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	m, err := k.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("read %s from the leader of %s: %w", key, stream, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("read %s from the leader of %s: %w", key, stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == errNoMessage:
		return nil, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, fmt.Errorf("read %s from the leader of %s: %s (%d)", key, stream, resp.Error.Description, resp.Error.ErrorCode)
	case resp.Message == nil:
		return nil, fmt.Errorf("read %s from the leader of %s: an empty answer", key, stream)
	}
	return resp.Message, nil
}

// entry is a jetstream.KeyValueEntry read from the leader.
type entry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return e.bucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return e.created }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }
