// Package eventbus carries applied billing events and access revocations
// between server replicas over Redis pub/sub, to each replica's
// billingEvents subscribers.
package eventbus

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// subscriberBuffer is how many events a slow subscriber may fall behind
// before the oldest are dropped for it.
const subscriberBuffer = 64

// Bus carries billing events between server replicas over Redis pub/sub.
// Each process holds one pattern subscription and fans events out to its
// local subscribers by workspace, so a thousand websocket subscribers cost
// one Redis connection, not a thousand. go-redis re-subscribes by itself
// when Redis comes back after an outage.
//
// A replica's near cache hears of a change on a connection of its own, so
// an event could reach a subscriber before the invalidation that came
// with it reached the near cache; a client that reads the workspace on
// the push would be answered from memory, stale. The bus therefore drops
// the event's workspace from the near cache before it hands the event to
// anyone.
type Bus struct {
	rdb    redis.UniversalClient
	prefix string
	near   NearCache
	log    *slog.Logger

	mu     sync.Mutex
	subs   map[string]map[*subscriber]struct{}
	pubsub *redis.PubSub
	cancel context.CancelFunc
	done   chan struct{}
}

// NearCache is the replica's in-memory cache as the bus sees it
// (cache.Near): DropWorkspace forgets, on this replica only, what it holds
// of a workspace.
type NearCache interface {
	DropWorkspace(workspaceID string)
}

// New returns a bus whose channels start with prefix, in front of this
// replica's near cache (nil for none). Call Start before Subscribe, and
// Close when done.
func New(rdb redis.UniversalClient, prefix string, near NearCache, log *slog.Logger) *Bus {
	if log == nil {
		log = slog.Default()
	}
	return &Bus{rdb: rdb, prefix: prefix, near: near, log: log, subs: map[string]map[*subscriber]struct{}{}}
}

func (b *Bus) channel(workspaceID string) string { return b.prefix + "events:" + workspaceID }

// accessChannel carries a workspace's revocations: a user whose access
// ended or narrowed, whose subscriptions to the workspace must end.
func (b *Bus) accessChannel(workspaceID string) string { return b.prefix + "access:" + workspaceID }

// Start subscribes to every workspace's channel and dispatches messages to
// local subscribers until Close.
func (b *Bus) Start(ctx context.Context) error {
	ctx, b.cancel = context.WithCancel(ctx)
	b.pubsub = b.rdb.PSubscribe(ctx, b.prefix+"events:*", b.prefix+"access:*")
	// Wait for Redis to confirm, so that an event published after Start
	// returns is not missed; an unreachable Redis is not fatal: go-redis
	// keeps retrying and subscribers get events once it answers.
	if _, err := b.pubsub.Receive(ctx); err != nil {
		b.log.Warn("event bus: Redis unavailable at start; will subscribe when it returns", "err", err)
	}
	b.done = make(chan struct{})
	go b.dispatch(b.pubsub.Channel())
	return nil
}

func (b *Bus) dispatch(msgs <-chan *redis.Message) {
	defer close(b.done)
	for msg := range msgs {
		if ws, ok := strings.CutPrefix(msg.Channel, b.prefix+"access:"); ok {
			b.revoke(ws, msg.Payload)
			continue
		}
		ws := strings.TrimPrefix(msg.Channel, b.prefix+"events:")
		if b.near != nil {
			b.near.DropWorkspace(ws)
		}
		// One Message for every local subscriber: it is decoded once, by
		// whichever subscriber needs it first.
		m := &Message{Payload: []byte(msg.Payload)}
		b.mu.Lock()
		for sub := range b.subs[ws] {
			sub.receive(m)
		}
		b.mu.Unlock()
	}
}

// Message is one event from the bus, shared by all of a replica's
// subscribers to its workspace.
type Message struct {
	Payload []byte

	once sync.Once
	val  any
	err  error

	mu     sync.Mutex
	shared map[string]*sharedValue
}

// sharedValue is one of Share's values. turn holds a token while nobody
// is computing it; a caller takes the token to read or compute the value,
// so callers that arrive during a computation wait for it, each for no
// longer than its own context.
type sharedValue struct {
	turn chan struct{}
	val  any
	ok   bool
}

// Decode returns decode(Payload), computed once for all subscribers; the
// value is shared, so callers must not change it.
func (m *Message) Decode(decode func([]byte) (any, error)) (any, error) {
	m.once.Do(func() { m.val, m.err = decode(m.Payload) })
	return m.val, m.err
}

// Share returns what compute returned for key, computed once for all the
// message's subscribers that share key: the first caller computes, and
// callers that arrive meanwhile wait for it, or return ctx's error if
// their ctx ends first. When compute declines to share its value (share
// false: it was cut short), its caller still gets the value, and the next
// caller computes again. The value is shared, so callers must not change
// it.
func (m *Message) Share(ctx context.Context, key string, compute func() (v any, share bool)) (any, error) {
	m.mu.Lock()
	if m.shared == nil {
		m.shared = map[string]*sharedValue{}
	}
	sv := m.shared[key]
	if sv == nil {
		sv = &sharedValue{turn: make(chan struct{}, 1)}
		sv.turn <- struct{}{}
		m.shared[key] = sv
	}
	m.mu.Unlock()

	select {
	case <-sv.turn:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { sv.turn <- struct{}{} }()
	if sv.ok {
		return sv.val, nil
	}
	v, share := compute()
	if share {
		sv.val, sv.ok = v, true
	}
	return v, nil
}

// deliver sends without blocking; a full buffer drops its oldest event, so
// one stuck websocket never stalls the others.
func deliver[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}

// Deliver is deliver for subscribers outside this package: a send that
// never blocks, dropping the oldest buffered value when ch is full.
func Deliver[T any](ch chan T, v T) { deliver(ch, v) }

// SubscriberBuffer is how many events a subscriber's channel should hold.
const SubscriberBuffer = subscriberBuffer

// Publish sends an event to every subscriber of the workspace on every
// replica.
func (b *Bus) Publish(ctx context.Context, workspaceID string, payload []byte) error {
	return b.rdb.Publish(ctx, b.channel(workspaceID), payload).Err()
}

// Publication is one event for PublishAll: its workspace and payload.
type Publication struct {
	WorkspaceID string
	Payload     []byte
}

// PublishAll publishes events as Publish publishes each, in order, in one
// round trip to Redis (a pipeline): a webhook run's events cost one. It
// returns the first failure.
func (b *Bus) PublishAll(ctx context.Context, pubs []Publication) error {
	if len(pubs) == 0 {
		return nil
	}
	rdb := b.rdb
	if c, ok := rdb.(*redis.ClusterClient); ok {
		// A cluster pipeline spreads keyless commands such as PUBLISH over
		// its masters, each share sent on its own: the events of one
		// workspace could then arrive out of order. A publication on any
		// node reaches every node's subscribers, so all go to one.
		node, err := c.MasterForKey(ctx, b.channel(pubs[0].WorkspaceID))
		if err != nil {
			return err
		}
		rdb = node
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range pubs {
			p.Publish(ctx, b.channel(m.WorkspaceID), m.Payload)
		}
		return nil
	})
	return err
}

// Subscribe returns a channel of the workspace's events, closed when ctx
// ends. The caller must have checked that the viewer may see them.
func (b *Bus) Subscribe(ctx context.Context, workspaceID string) <-chan *Message {
	ch := make(chan *Message, subscriberBuffer)
	b.SubscribeFunc(ctx, workspaceID, func(m *Message) { deliver(ch, m) }, func() { close(ch) })
	return ch
}

// SubscribeFunc calls receive with each of the workspace's events until
// ctx ends, then calls done; receive is never called after done. Both run
// on the bus's dispatch goroutine (or ctx's), so they must not block:
// receive should hand the event on without waiting (a buffered channel
// that drops its oldest, as deliver does). There is no goroutine per
// subscriber. The caller must have checked that the viewer may see the
// events.
func (b *Bus) SubscribeFunc(ctx context.Context, workspaceID string, receive func(*Message), done func()) {
	b.SubscribeAs(ctx, workspaceID, "", receive, func(*Revocation) { done() })
}

// SubscribeAs is SubscribeFunc for a subscription of userID, which ends
// early when RevokeAccess names that user and workspace on any replica:
// done is then called with the revocation (and with nil when ctx ends).
// done is called once. The returned end ends the subscription at once,
// as a revocation r would.
func (b *Bus) SubscribeAs(ctx context.Context, workspaceID, userID string, receive func(*Message), done func(*Revocation)) (end func(r *Revocation)) {
	sub := &subscriber{user: userID, receive: receive, done: done}
	b.mu.Lock()
	if b.subs[workspaceID] == nil {
		b.subs[workspaceID] = map[*subscriber]struct{}{}
	}
	b.subs[workspaceID][sub] = struct{}{}
	b.mu.Unlock()
	// Removed under the lock dispatch delivers under, so nothing is
	// received after done.
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.end(workspaceID, sub, nil)
	})
	return func(r *Revocation) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.end(workspaceID, sub, r)
	}
}

// end removes a subscriber and calls its done, once; b.mu must be held.
func (b *Bus) end(workspaceID string, sub *subscriber, r *Revocation) {
	if sub.ended {
		return
	}
	sub.ended = true
	delete(b.subs[workspaceID], sub)
	if len(b.subs[workspaceID]) == 0 {
		delete(b.subs, workspaceID)
	}
	sub.done(r)
}

// subscriber is one local subscription.
type subscriber struct {
	user    string
	receive func(*Message)
	done    func(*Revocation)
	ended   bool
}

// Revocation says that a user's access to a workspace ended or narrowed,
// and why (billing's AccessEnded reasons).
type Revocation struct {
	UserID string `json:"userId"`
	Reason string `json:"reason"`
}

// RevokeAccess ends userID's subscriptions to the workspace on every
// replica, telling each why. It also drops the workspace from every
// replica's near cache, like an event does.
func (b *Bus) RevokeAccess(ctx context.Context, workspaceID, userID, reason string) error {
	payload, err := json.Marshal(Revocation{UserID: userID, Reason: reason})
	if err != nil {
		return err
	}
	return b.rdb.Publish(ctx, b.accessChannel(workspaceID), payload).Err()
}

// revoke ends the local subscriptions a revocation names.
func (b *Bus) revoke(workspaceID, payload string) {
	var r Revocation
	if err := json.Unmarshal([]byte(payload), &r); err != nil || r.UserID == "" {
		b.log.Warn("event bus: unreadable access revocation dropped", "workspace_id", workspaceID, "err", err)
		return
	}
	if b.near != nil {
		b.near.DropWorkspace(workspaceID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.subs[workspaceID] {
		if sub.user == r.UserID {
			b.end(workspaceID, sub, &r)
		}
	}
}

// Subscribers returns how many local subscribers are attached.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.subs {
		n += len(s)
	}
	return n
}

// Close stops the bus.
func (b *Bus) Close() error {
	if b.cancel == nil {
		return nil
	}
	b.cancel()
	err := b.pubsub.Close()
	<-b.done
	return err
}
