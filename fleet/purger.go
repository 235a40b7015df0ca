package fleet

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// PurgeChannelName is the name, under the client's key prefix
// (Client.Channel), of the Pub/Sub channel replicas purge on. v2 messages
// carry a MAC.
const PurgeChannelName = "v2:purge"

// Purger bounds.
const (
	// DefaultClearInterval is the shortest time between two OnReconnect
	// calls when Purger.ClearInterval is not set. Owners should set
	// ClearInterval to a tenth of the memory tier's TTL.
	DefaultClearInterval = time.Minute
	// purgeMaxAge is how old a purge message may be, by the clock of the
	// replica that sent it, before it is taken for a replay and ignored.
	// Generous, for clocks that disagree; a replayed purge costs only a
	// refetch.
	purgeMaxAge = 5 * time.Minute
)

// purgeMessage is what Publish sends, as JSON: the image's id, its
// variant ("" for every variant) and when it was sent, in Unix
// milliseconds. On the channel it is "<hex MAC> <JSON>".
type purgeMessage struct {
	ID      string `json:"id"`
	Variant string `json:"variant"`
	At      int64  `json:"at"`
}

// Purger fans purges out to every replica through a Redis Pub/Sub channel:
// Publish on one replica makes every subscribed replica call onPurge.
//
// Anyone who can publish on the channel is not thereby allowed to purge:
// every message carries a MAC under a key only the gateways hold, and a
// message whose MAC fails, that does not decode or that is older than five
// minutes is ignored and reported to OnRejected.
//
// Pub/Sub delivers only to subscribers connected at that moment, so a
// replica cut off from Redis misses purges, and cannot know which. It calls
// OnDisconnect when it loses its subscription and OnReconnect when the
// subscription is back; the owner is expected to drop the memory tiers
// that sit in front of this Redis in OnReconnect. So that a subscription
// dropped again and again (by `CLIENT KILL TYPE pubsub`, say) does not
// empty them again and again, OnReconnect is called at most once per
// ClearInterval: a reconnection sooner than that is answered when the
// interval has passed. A missed purge thus leaves stale entries in a
// replica's memory for at most the outage plus ClearInterval, plus up to
// two health-check intervals (one minute) when the connection died without
// closing, or the memory tier's TTL if that is shorter. A Publish that
// fails reaches no other replica; their entries then live until the memory
// tier's TTL. The Redis tier needs no message: the purging replica deletes
// those keys.
type Purger struct {
	// OnDisconnect, if set before Start, is called once when the
	// subscription is lost, or its first attempt fails; purges may be
	// missed from then on. It must not block.
	OnDisconnect func()
	// OnReconnect, if set before Start, is called when the subscription
	// is confirmed after OnDisconnect, at most once per ClearInterval. It
	// must not block.
	OnReconnect func()
	// ClearInterval, if set before Start, is the shortest time between
	// two OnReconnect calls (DefaultClearInterval if <= 0).
	ClearInterval time.Duration
	// OnRejected, if set before Start, is called with RejectPurge for
	// every message ignored as forged, malformed or replayed. It must not
	// block.
	OnRejected func(reason string)

	c       *Client
	channel string
	key     []byte
	onPurge func(id, variant string)
	sub     subscription

	mu        sync.Mutex
	lastClear time.Time   // the last OnReconnect call
	pending   *time.Timer // a delayed OnReconnect, if one is due
	stopped   bool
}

// NewPurger returns a Purger on channel (Client.Channel(PurgeChannelName)
// for the fleet's) that calls onPurge for each purge published by any
// replica, this one included. macKey signs and checks the messages: at
// least 16 bytes every replica shares and nobody else has, such as a key
// derived from the signing key. It panics on a shorter key.
func NewPurger(c *Client, channel string, macKey []byte, onPurge func(id, variant string)) *Purger {
	checkMACKey("NewPurger", macKey)
	p := &Purger{c: c, channel: channel, key: bytes.Clone(macKey), onPurge: onPurge}
	p.sub = subscription{c: c, channel: channel, onMessage: p.receive, onDown: p.down, onUp: p.up}
	return p
}

// Start subscribes in the background and returns at once; the
// subscription lasts until ctx ends or Close. Call it once.
func (p *Purger) Start(ctx context.Context) { p.sub.start(ctx) }

// Close ends the subscription, cancels a delayed OnReconnect, and waits
// for Start's loop to return.
func (p *Purger) Close() {
	p.sub.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.pending != nil {
		p.pending.Stop()
		p.pending = nil
	}
}

// Publish asks every replica to purge id's variant ("" for every variant).
// It does not call onPurge itself: the caller purges its own replica first
// (its own message comes back through the subscription too, harmlessly), so
// the purge holds locally even while Redis is unavailable.
func (p *Purger) Publish(ctx context.Context, id, variant string) error {
	payload, err := json.Marshal(purgeMessage{ID: id, Variant: variant, At: time.Now().UnixMilli()})
	if err != nil {
		return fmt.Errorf("fleet: encode purge: %w", err)
	}
	msg := hex.EncodeToString(mac(p.key, domainPurge, []byte(p.channel), payload)) + " " + string(payload)
	err = p.c.do(ctx, OpPublish, func(ctx context.Context) error {
		return p.c.rdb.Publish(ctx, p.channel, msg).Err()
	})
	if err != nil {
		return fmt.Errorf("fleet: publish purge: %w", err)
	}
	return nil
}

// receive handles one message: a purge whose MAC verifies and that is
// recent, else a rejection.
func (p *Purger) receive(payload string) {
	sum, body, _ := strings.Cut(payload, " ")
	var pm purgeMessage
	rawSum, err := hex.DecodeString(sum)
	if err != nil || !validMAC(p.key, rawSum, domainPurge, []byte(p.channel), []byte(body)) ||
		json.Unmarshal([]byte(body), &pm) != nil || pm.ID == "" ||
		time.Since(time.UnixMilli(pm.At)).Abs() > purgeMaxAge {
		if p.OnRejected != nil {
			p.OnRejected(RejectPurge)
		}
		return
	}
	p.onPurge(pm.ID, pm.Variant)
}

func (p *Purger) down() {
	if p.OnDisconnect != nil {
		p.OnDisconnect()
	}
}

// up calls OnReconnect after a loss, at once if the last call was at least
// ClearInterval ago, else once when it will be.
func (p *Purger) up(afterLoss bool) {
	if !afterLoss || p.OnReconnect == nil {
		return
	}
	interval := p.ClearInterval
	if interval <= 0 {
		interval = DefaultClearInterval
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending != nil || p.stopped {
		return // a clear is due already: it covers this reconnection too
	}
	wait := time.Until(p.lastClear.Add(interval))
	if p.lastClear.IsZero() || wait <= 0 {
		p.lastClear = time.Now()
		p.OnReconnect()
		return
	}
	p.pending = time.AfterFunc(wait, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stopped {
			return
		}
		p.pending = nil
		p.lastClear = time.Now()
		p.OnReconnect()
	})
}
