package cache

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultNearTTL bounds how long a near-cache entry lives even when no
// invalidation reaches it (a replica that could not publish one).
const DefaultNearTTL = 5 * time.Second

// DefaultNearBytes is the near cache's default memory budget (Near.MaxBytes).
const DefaultNearBytes = 16 << 20

// nearMaxEntries bounds one group, so that one workspace's entries (one
// user's many distinct queries, say) cannot crowd out every other's: a
// full group makes room by dropping one entry, the first to expire of a
// few sampled (see makeRoom), never the whole group.
const nearMaxEntries = 1024

// nearRoomSamples is how many entries makeRoom looks at in a full group.
const nearRoomSamples = 8

// The cost of an entry, as counted against MaxBytes: its value's bytes when
// it is bytes or a string, else an estimate of a decoded struct (a billing
// status, a workspace, a catalog of a few plans), plus the key and the
// maps' own overhead.
const (
	nearEntryOverhead = 96
	nearValueEstimate = 1024
	nearGroupOverhead = 256
)

// AllGroups invalidates every group (a write whose workspace is not known,
// such as a bulk update).
const AllGroups = "*"

// PricesGroup is the near-cache group of the decoded plan catalog.
const PricesGroup = "prices"

// WorkspaceGroup is the near-cache group of one workspace's entries (its
// billing status, and which users may see it).
func WorkspaceGroup(workspaceID string) string { return "ws:" + workspaceID }

// Near is an in-process cache in front of Redis and the database for the
// reads on every request's path (the plan catalog, a workspace's billing
// status, whether a user may see a workspace), so that a warm read costs no
// network round trip.
//
// Entries live in groups (a workspace, the catalog). A change invalidates
// its group on every replica: the writer drops it locally and publishes
// the group's name on Redis, where every replica's Near listens. An entry
// also expires after its TTL, which bounds staleness if a publication is
// lost. While the subscription is down (Redis unreachable, or not yet
// confirmed), the near cache holds nothing and every read goes to the
// source, so a replica that may have missed an invalidation never answers
// from memory.
//
// A read that misses takes a ticket; its fill is refused if any
// invalidation happened since, so a value read from the source before a
// change can never be put back after the change's invalidation.
type Near struct {
	rdb     redis.UniversalClient
	channel string
	ttl     time.Duration
	log     *slog.Logger

	// MaxBytes bounds the memory the entries take, as estimated by their
	// cost (default DefaultNearBytes). A fill that would pass it first
	// drops every expired entry, then arbitrary entries until what is
	// held is at most 90% of it, so that the fills after it do not each
	// pay for a scan. An entry that alone costs more than those 90% is not
	// kept (it would empty the cache). Set it before Start.
	MaxBytes int64

	mu     sync.RWMutex
	groups map[string]*nearGroup
	bytes  int64         // the cost of every entry and group held
	swept  time.Time     // when expired entries were last dropped
	gen    atomic.Uint64 // bumped by every invalidation and clear
	on     atomic.Bool   // the invalidation subscription is confirmed

	// PingEvery is how often an idle subscription is checked (default 2 s):
	// a connection that died silently turns the cache off within about
	// twice this long. Set it before Start.
	PingEvery time.Duration

	psMu   sync.Mutex
	ps     *redis.PubSub
	cancel context.CancelFunc
	done   chan struct{}
}

type nearGroup struct {
	entries map[string]nearEntry
	bytes   int64
}

type nearEntry struct {
	val     any
	expires time.Time
	cost    int64
}

// entryCost is what an entry counts against MaxBytes.
func entryCost(key string, val any) int64 {
	c := nearEntryOverhead + len(key)
	switch v := val.(type) {
	case []byte:
		c += len(v)
	case json.RawMessage:
		c += len(v)
	case string:
		c += len(v)
	default:
		c += nearValueEstimate
	}
	return int64(c)
}

// NewNear returns a near cache whose invalidation channel starts with
// prefix. It holds nothing until Start has subscribed.
func NewNear(rdb redis.UniversalClient, prefix string, ttl time.Duration, log *slog.Logger) *Near {
	if log == nil {
		log = slog.Default()
	}
	if ttl <= 0 {
		ttl = DefaultNearTTL
	}
	return &Near{rdb: rdb, channel: prefix + "invalidate", ttl: ttl, log: log, groups: map[string]*nearGroup{}}
}

// Get returns the value of key in group, if held and fresh. The ticket is
// what Fill needs after a miss.
func (n *Near) Get(group, key string) (val any, ok bool, ticket uint64) {
	e, ok, ticket := n.get(group, key)
	return e.val, ok, ticket
}

func (n *Near) get(group, key string) (e nearEntry, ok bool, ticket uint64) {
	if n == nil {
		return nearEntry{}, false, 0
	}
	ticket = n.gen.Load()
	if !n.on.Load() {
		return nearEntry{}, false, ticket
	}
	n.mu.RLock()
	if g := n.groups[group]; g != nil {
		e, ok = g.entries[key]
	}
	n.mu.RUnlock()
	if !ok || !time.Now().Before(e.expires) {
		return nearEntry{}, false, ticket
	}
	return e, true, ticket
}

// Fill stores val under key in group, unless an invalidation happened
// since ticket was taken or the near cache is off. Callers must treat val
// as read-only from then on: other requests share it. It returns when the
// entry expires: no later than that, a value built from val must expire
// too (see FillUntil), whether or not this fill was kept.
func (n *Near) Fill(group, key string, val any, ticket uint64) (expires time.Time) {
	return n.FillUntil(group, key, val, ticket, time.Time{})
}

// FillUntil is Fill for a value that must expire by until at the latest
// (when it is not zero) as well as after the TTL: a value built from other
// entries lives no longer than the first of them to expire, so that the
// TTL still bounds how stale it can be.
func (n *Near) FillUntil(group, key string, val any, ticket uint64, until time.Time) (expires time.Time) {
	if n == nil {
		return time.Time{}
	}
	now := time.Now()
	expires = now.Add(n.ttl)
	if !until.IsZero() && until.Before(expires) {
		expires = until
	}
	cost := entryCost(key, val)
	budget := n.budget()
	lowWater := budget * 9 / 10
	if !n.on.Load() || !now.Before(expires) || cost+nearGroupOverhead > lowWater {
		return expires
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// Checked under the lock: invalidations bump gen under it too.
	if n.gen.Load() != ticket {
		return expires
	}
	g := n.groups[group]
	if old, ok := g.lookup(key); ok {
		n.remove(group, g, key, old)
	}
	if g != nil && len(g.entries) >= nearMaxEntries {
		n.makeRoom(group, g, now)
	}
	if n.bytes+cost+nearGroupOverhead > budget {
		n.sweep(now)
		n.evict(lowWater - cost - nearGroupOverhead)
	}
	if g = n.groups[group]; g == nil { // makeRoom or evict may have dropped it
		g = &nearGroup{entries: map[string]nearEntry{}}
		n.groups[group] = g
		n.bytes += nearGroupOverhead
	}
	g.entries[key] = nearEntry{val: val, expires: expires, cost: cost}
	g.bytes += cost
	n.bytes += cost
	return expires
}

func (g *nearGroup) lookup(key string) (nearEntry, bool) {
	if g == nil {
		return nearEntry{}, false
	}
	e, ok := g.entries[key]
	return e, ok
}

func (n *Near) budget() int64 {
	if n.MaxBytes > 0 {
		return n.MaxBytes
	}
	return DefaultNearBytes
}

// remove drops one entry, and its group once empty. n.mu must be held.
func (n *Near) remove(name string, g *nearGroup, key string, e nearEntry) {
	delete(g.entries, key)
	g.bytes -= e.cost
	n.bytes -= e.cost
	if len(g.entries) == 0 {
		n.dropGroup(name, g)
	}
}

// dropGroup drops a group and everything in it. n.mu must be held.
func (n *Near) dropGroup(name string, g *nearGroup) {
	delete(n.groups, name)
	n.bytes -= g.bytes + nearGroupOverhead
}

// makeRoom frees a place in a full group by dropping one entry: of a few
// sampled (Go's map order is randomised), the first to expire, which is
// one already expired if any was sampled. It costs the same however full
// the group is. n.mu must be held.
func (n *Near) makeRoom(name string, g *nearGroup, now time.Time) {
	var (
		victim  string
		oldest  nearEntry
		sampled int
	)
	for k, e := range g.entries {
		if sampled == 0 || e.expires.Before(oldest.expires) {
			victim, oldest = k, e
		}
		if sampled++; sampled == nearRoomSamples || !now.Before(e.expires) {
			break
		}
	}
	if sampled > 0 {
		n.remove(name, g, victim, oldest)
	}
}

// sweep drops every expired entry. n.mu must be held.
func (n *Near) sweep(now time.Time) {
	n.swept = now
	for name, g := range n.groups {
		for k, e := range g.entries {
			if !now.Before(e.expires) {
				n.remove(name, g, k, e)
			}
		}
	}
}

// evict drops arbitrary entries until what is held costs at most limit.
// n.mu must be held.
func (n *Near) evict(limit int64) {
	for name, g := range n.groups { // Go's map order is randomised
		for k, e := range g.entries {
			if n.bytes <= limit {
				return
			}
			n.remove(name, g, k, e)
		}
	}
}

// sweepIfDue drops expired entries once per TTL, so that entries nobody
// reads again do not stay in memory until the budget is reached.
func (n *Near) sweepIfDue() {
	now := time.Now()
	n.mu.RLock()
	due := now.Sub(n.swept) >= n.ttl
	n.mu.RUnlock()
	if !due {
		return
	}
	n.mu.Lock()
	n.sweep(now)
	n.mu.Unlock()
}

// Bytes reports the estimated cost of what the near cache holds.
func (n *Near) Bytes() int64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.bytes
}

// Invalidate drops groups here at once and on every other replica through
// Redis. It returns the publication's error; the local drop always
// happens, and the TTL bounds what another replica may still hold.
func (n *Near) Invalidate(ctx context.Context, groups ...string) error {
	if n == nil || len(groups) == 0 {
		return nil
	}
	n.drop(groups...)
	// One round trip for all of them: a webhook run invalidates the
	// workspaces it changed together.
	_, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, g := range groups {
			p.Publish(ctx, n.channel, g)
		}
		return nil
	})
	return err
}

// DropWorkspace drops a workspace's group on this replica only, without
// telling the others: for a replica that heard of a change to it another
// way, which every replica hears too (the event bus).
func (n *Near) DropWorkspace(workspaceID string) {
	if n != nil {
		n.drop(WorkspaceGroup(workspaceID))
	}
}

func (n *Near) drop(groups ...string) {
	n.mu.Lock()
	n.gen.Add(1)
	for _, name := range groups {
		if name == AllGroups {
			clear(n.groups)
			n.bytes = 0
			break
		}
		if g := n.groups[name]; g != nil {
			n.dropGroup(name, g)
		}
	}
	n.mu.Unlock()
}

// clear drops everything and turns the cache on or off.
func (n *Near) clear(on bool) {
	n.mu.Lock()
	n.gen.Add(1)
	n.on.Store(on)
	clear(n.groups)
	n.bytes = 0
	n.mu.Unlock()
}

// Enabled reports whether the near cache is answering (its invalidation
// subscription is confirmed).
func (n *Near) Enabled() bool { return n != nil && n.on.Load() }

// defaultNearPing is PingEvery's default.
const defaultNearPing = 2 * time.Second

// Start subscribes to invalidations and keeps the subscription until
// Close: the cache turns on at each confirmed (re)subscription, and off
// (cleared) whenever the subscription may have missed something.
func (n *Near) Start(ctx context.Context) {
	ctx, n.cancel = context.WithCancel(ctx)
	n.done = make(chan struct{})
	n.psMu.Lock()
	n.ps = n.rdb.Subscribe(ctx, n.channel)
	n.psMu.Unlock()
	go func() {
		defer close(n.done)
		n.listen(ctx)
	}()
}

// listen receives invalidations. An idle subscription is pinged every
// PingEvery, and a ping not answered by the next one counts as a lost
// subscription, like a read error: go-redis does not notice a connection
// that died silently (a dropped NAT entry), and a cache that stayed on
// would miss every invalidation. A lost subscription turns the cache off
// and is replaced by a new one, which turns it on once Redis confirms it.
func (n *Near) listen(ctx context.Context) {
	every := n.PingEvery
	if every <= 0 {
		every = defaultNearPing
	}
	failing, pinged := false, false
	ps := n.pubsub()
	for ctx.Err() == nil {
		n.sweepIfDue()
		msg, err := ps.ReceiveTimeout(ctx, every)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !pinged {
					if err = ps.Ping(ctx); err == nil {
						pinged = true
						continue
					}
				} else {
					err = errors.New("a ping went unanswered")
				}
			}
			if ctx.Err() != nil {
				return
			}
			n.clear(false)
			if !failing {
				failing = true
				n.log.Warn("near cache: invalidation subscription lost; reading from Redis and the database until it returns", "err", err)
			}
			pinged = false
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if ps = n.resubscribe(ctx); ps == nil {
				return
			}
			continue
		}
		pinged = false // any message shows the connection is alive
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				n.clear(true)
				if failing {
					failing = false
					n.log.Info("near cache: invalidation subscription is back")
				}
			}
		case *redis.Message:
			n.drop(m.Payload)
		}
	}
}

func (n *Near) pubsub() *redis.PubSub {
	n.psMu.Lock()
	defer n.psMu.Unlock()
	return n.ps
}

// resubscribe replaces the subscription with one on a new connection; nil
// once the cache is closing.
func (n *Near) resubscribe(ctx context.Context) *redis.PubSub {
	n.psMu.Lock()
	defer n.psMu.Unlock()
	_ = n.ps.Close()
	if ctx.Err() != nil {
		return nil
	}
	n.ps = n.rdb.Subscribe(ctx, n.channel)
	return n.ps
}

// Close stops listening and turns the cache off.
func (n *Near) Close() {
	if n == nil || n.cancel == nil {
		return
	}
	n.cancel()
	_ = n.pubsub().Close() // ends a receive in progress
	<-n.done
	n.clear(false)
}

// fillHintKey carries a *fillHint in a context.
type fillHintKey struct{}

// fillHint is what the reads under WithFillHint found: whether one was not
// to be kept, and when the first near-cache entry they hit expires.
type fillHint struct {
	mu    sync.Mutex // resolvers read concurrently
	skip  bool
	until time.Time
}

// WithFillHint returns a context for reads that a value will be built from
// (a response), and a function that says whether that value may be kept in
// the near cache and until when at the latest (see FillUntil): not if any
// read was marked with SkipFill, and no longer than the first near-cache
// entry that GetOrLoad found or filled.
func WithFillHint(ctx context.Context) (context.Context, func() (keep bool, until time.Time)) {
	h := &fillHint{}
	return context.WithValue(ctx, fillHintKey{}, h), func() (bool, time.Time) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.skip, h.until
	}
}

// SkipFill marks, for a WithFillHint caller up the stack, that a value read
// in ctx must not be kept.
func SkipFill(ctx context.Context) {
	if h, ok := ctx.Value(fillHintKey{}).(*fillHint); ok {
		h.mu.Lock()
		h.skip = true
		h.mu.Unlock()
	}
}

// readUntil tells a WithFillHint caller up the stack that a value read in
// ctx came from a near-cache entry that expires at expires.
func readUntil(ctx context.Context, expires time.Time) {
	if expires.IsZero() {
		return
	}
	if h, ok := ctx.Value(fillHintKey{}).(*fillHint); ok {
		h.mu.Lock()
		if h.until.IsZero() || expires.Before(h.until) {
			h.until = expires
		}
		h.mu.Unlock()
	}
}

// GetOrLoad returns the value of key in group from n, or else calls load
// and, when load says the value may be kept, keeps it for the next
// callers. It takes the ticket before load, so a value read before an
// invalidation is never kept after it. Values are shared: clone copies
// one on the way in and on the way out, so that no caller can change what
// another reads. hit reports whether the value came from n.
//
// What it reads is told to a WithFillHint caller up ctx's stack: a value
// load says not to keep (SkipFill), and the expiry of the entry it hit or
// filled.
func GetOrLoad[T any](ctx context.Context, n *Near, group, key string, clone func(T) T, load func() (v T, keep bool, err error)) (v T, hit bool, err error) {
	e, ok, ticket := n.get(group, key)
	if ok {
		readUntil(ctx, e.expires)
		return clone(e.val.(T)), true, nil
	}
	v, keep, err := load()
	if err != nil {
		return v, false, err
	}
	if !keep {
		SkipFill(ctx)
		return v, false, nil
	}
	readUntil(ctx, n.Fill(group, key, clone(v), ticket))
	return v, false, nil
}
