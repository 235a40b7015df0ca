package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// FilledChannelName is the name, under the client's key prefix
// (Client.Channel), of the Pub/Sub channel fill-lease holders announce on.
const FilledChannelName = "v2:filled"

// OpLease is the operation name passed to Options.OnOp for taking and
// giving up fill leases.
const OpLease = "lease"

// leaseSlack is added to a held lease's remaining time before a waiter
// gives up on it, for the clocks of Redis and this process to disagree by.
const leaseSlack = 20 * time.Millisecond

// Leases is an imageproxy.FillLeases on Redis: one replica fetches a
// missing object while the others wait for it to appear in the shared
// tier, so the fleet fetches each object once, not once per replica.
//
// A lease is a key taken with SET NX PX (the lease time: the proxy passes
// its fetch timeout) holding a random token, and given up by
// compare-and-delete, so a holder whose lease lapsed cannot end another's.
// Then the holder publishes a notice, MACed like purges, on one channel
// that every replica subscribes to once: the waiters of that lease wake
// and look in the shared tier (the holder stored it first). No waiter
// polls Redis.
//
// A lease saves work; it is never needed for a correct answer (a
// single-node lock is enough for that, see Kleppmann, "How to do
// distributed locking", 2016). A holder that dies costs its waiters at
// most the rest of its lease time; when Redis fails, or the subscription
// is down (a notice could be missed), Acquire answers "fetch on your own".
// A lease lost in a failover at worst makes a second fetch.
type Leases struct {
	// OnRejected, if set before Start, is called with RejectFilled for
	// every notice whose MAC fails. It must not block.
	OnRejected func(reason string)

	c       *Client
	channel string
	key     []byte
	sub     subscription

	mu    sync.Mutex
	waits map[string][]chan struct{} // by lease key
}

var _ imageproxy.FillLeases = (*Leases)(nil)

// NewLeases returns the fill leases on c, announced on channel
// (Client.Channel(FilledChannelName) for the fleet's), whose notices are
// MACed with macKey: at least 16 bytes every replica shares, such as a
// key derived from the signing key. It panics on a shorter key. Call
// Start before use; until the subscription is confirmed, Acquire answers
// "fetch on your own".
func NewLeases(c *Client, channel string, macKey []byte) *Leases {
	checkMACKey("NewLeases", macKey)
	l := &Leases{c: c, channel: channel, key: bytes.Clone(macKey), waits: map[string][]chan struct{}{}}
	l.sub = subscription{c: c, channel: channel, onMessage: l.receive, onDown: l.wakeAll}
	return l
}

// Start subscribes to the notices in the background and returns at once;
// the subscription lasts until ctx ends or Close. Call it once.
func (l *Leases) Start(ctx context.Context) { l.sub.start(ctx) }

// Close ends the subscription and wakes every waiter.
func (l *Leases) Close() {
	l.sub.close()
	l.wakeAll()
}

// leaseKey returns the Redis key of k's fill lease, in the hash slot of
// k's object.
func (l *Leases) leaseKey(k imageproxy.Key) string {
	return l.c.Key(imageVersion, "lease", objectTag(k.AccountHash, k.ID), keyPart(k.Variant), formatName(k.Format))
}

// Acquire implements imageproxy.FillLeases: one round trip (SET NX PX and
// PTTL, pipelined).
func (l *Leases) Acquire(ctx context.Context, k imageproxy.Key, ttl time.Duration) (imageproxy.Lease, <-chan struct{}) {
	if !l.sub.live.Load() || ttl <= 0 {
		return nil, nil // a notice could be missed: waiting could cost a whole lease time
	}
	lk := l.leaseKey(k)
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(tok[:])
	// Registered before the lease is tried, so a notice sent between the
	// try and the wait is not missed.
	ch := l.register(lk)
	var set bool
	var left time.Duration
	err := l.c.do(ctx, OpLease, func(ctx context.Context) error {
		var setCmd *redis.BoolCmd
		var pttl *redis.DurationCmd
		_, err := l.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			setCmd = p.SetNX(ctx, lk, token, ttl)
			pttl = p.PTTL(ctx, lk)
			return nil
		})
		if err != nil {
			return err
		}
		set, left = setCmd.Val(), pttl.Val()
		return nil
	})
	if err != nil || set {
		l.unregister(lk, ch)
		if err != nil {
			return nil, nil
		}
		return &lease{l: l, key: lk, token: token}, nil
	}
	if left <= 0 { // lapsed or given up between the two commands
		l.unregister(lk, ch)
		closed := make(chan struct{})
		close(closed)
		return nil, closed
	}
	time.AfterFunc(min(left, ttl)+leaseSlack, func() { l.wake(lk, ch) })
	return nil, ch
}

// register adds a waiter for lease key lk.
func (l *Leases) register(lk string) chan struct{} {
	ch := make(chan struct{})
	l.mu.Lock()
	l.waits[lk] = append(l.waits[lk], ch)
	l.mu.Unlock()
	return ch
}

// unregister removes ch, not closed, from lk's waiters.
func (l *Leases) unregister(lk string, ch chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.remove(lk, ch)
}

// remove drops ch from lk's waiters and reports whether it was there.
// l.mu is held.
func (l *Leases) remove(lk string, ch chan struct{}) bool {
	ws := l.waits[lk]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			if len(ws) == 0 {
				delete(l.waits, lk)
			} else {
				l.waits[lk] = ws
			}
			return true
		}
	}
	return false
}

// wake closes ch, a waiter of lk whose lease ran out, if it still waits.
func (l *Leases) wake(lk string, ch chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.remove(lk, ch) {
		close(ch)
	}
}

// wakeKey wakes every waiter of lease key lk.
func (l *Leases) wakeKey(lk string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ch := range l.waits[lk] {
		close(ch)
	}
	delete(l.waits, lk)
}

// wakeAll wakes every waiter: the subscription was lost, so their notices
// may be.
func (l *Leases) wakeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for lk, ws := range l.waits {
		for _, ch := range ws {
			close(ch)
		}
		delete(l.waits, lk)
	}
}

// receive handles a notice, "<hex MAC> <lease key>": the lease was given
// up.
func (l *Leases) receive(payload string) {
	sum, lk, _ := strings.Cut(payload, " ")
	raw, err := hex.DecodeString(sum)
	if err != nil || !validMAC(l.key, raw, domainFilled, []byte(l.channel), []byte(lk)) {
		if l.OnRejected != nil {
			l.OnRejected(RejectFilled)
		}
		return
	}
	l.wakeKey(lk)
}

// releaseScript deletes a lease only if it still holds the holder's
// token: a lease that lapsed and was taken by another stays theirs.
var releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

// lease is a held fill lease.
type lease struct {
	l     *Leases
	key   string
	token string
}

// Done gives the lease up and announces it, in one round trip. filled is
// not sent: a waiter looks in the shared tier either way, and fetches on
// its own if the object is not there.
func (ls *lease) Done(ctx context.Context, filled bool) {
	l := ls.l
	notice := hex.EncodeToString(mac(l.key, domainFilled, []byte(l.channel), []byte(ls.key))) + " " + ls.key
	_ = l.c.do(ctx, OpLease, func(ctx context.Context) error {
		_, err := l.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Eval(ctx, releaseScript, []string{ls.key}, ls.token)
			p.Publish(ctx, l.channel, notice)
			return nil
		})
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	})
}
