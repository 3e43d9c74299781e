package cache

import (
	"context"
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

// nearMaxGroups and nearMaxEntries bound the near cache's memory: past
// them, an arbitrary group is dropped before a new one is added, and a
// full group is emptied before a new entry is added to it.
const (
	nearMaxGroups  = 20_000
	nearMaxEntries = 1024
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

	mu     sync.RWMutex
	groups map[string]map[string]nearEntry
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

type nearEntry struct {
	val     any
	expires time.Time
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
	return &Near{rdb: rdb, channel: prefix + "invalidate", ttl: ttl, log: log, groups: map[string]map[string]nearEntry{}}
}

// Get returns the value of key in group, if held and fresh. The ticket is
// what Fill needs after a miss.
func (n *Near) Get(group, key string) (val any, ok bool, ticket uint64) {
	if n == nil {
		return nil, false, 0
	}
	ticket = n.gen.Load()
	if !n.on.Load() {
		return nil, false, ticket
	}
	n.mu.RLock()
	e, ok := n.groups[group][key]
	n.mu.RUnlock()
	if !ok || time.Now().After(e.expires) {
		return nil, false, ticket
	}
	return e.val, true, ticket
}

// Fill stores val under key in group, unless an invalidation happened
// since ticket was taken or the near cache is off. Callers must treat val
// as read-only from then on: other requests share it.
func (n *Near) Fill(group, key string, val any, ticket uint64) {
	if n == nil || !n.on.Load() {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// Checked under the lock: invalidations bump gen under it too.
	if n.gen.Load() != ticket {
		return
	}
	g := n.groups[group]
	if g == nil {
		if len(n.groups) >= nearMaxGroups {
			for k := range n.groups {
				delete(n.groups, k)
				break
			}
		}
		g = map[string]nearEntry{}
		n.groups[group] = g
	}
	if len(g) >= nearMaxEntries {
		clear(g)
	}
	g[key] = nearEntry{val: val, expires: time.Now().Add(n.ttl)}
}

// Invalidate drops groups here at once and on every other replica through
// Redis. It returns the publication's error; the local drop always
// happens, and the TTL bounds what another replica may still hold.
func (n *Near) Invalidate(ctx context.Context, groups ...string) error {
	if n == nil || len(groups) == 0 {
		return nil
	}
	n.drop(groups...)
	var errs []error
	for _, g := range groups {
		if err := n.rdb.Publish(ctx, n.channel, g).Err(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Near) drop(groups ...string) {
	n.mu.Lock()
	n.gen.Add(1)
	for _, g := range groups {
		if g == AllGroups {
			clear(n.groups)
			break
		}
		delete(n.groups, g)
	}
	n.mu.Unlock()
}

// clear drops everything and turns the cache on or off.
func (n *Near) clear(on bool) {
	n.mu.Lock()
	n.gen.Add(1)
	n.on.Store(on)
	clear(n.groups)
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

// fillHintKey carries a fill hint in a context.
type fillHintKey struct{}

// WithFillHint returns a context in which SkipFill can mark that some value
// read was not one to keep (Redis did not hold it), and a function that
// reports whether nothing was marked: whether what was built from those
// reads may be kept in the near cache.
func WithFillHint(ctx context.Context) (context.Context, func() bool) {
	var skip atomic.Bool
	return context.WithValue(ctx, fillHintKey{}, &skip), func() bool { return !skip.Load() }
}

// SkipFill marks, for a WithFillHint caller up the stack, that a value read
// in ctx must not be kept.
func SkipFill(ctx context.Context) {
	if skip, ok := ctx.Value(fillHintKey{}).(*atomic.Bool); ok {
		skip.Store(true)
	}
}

// GetOrLoad returns the value of key in group from n, or else calls load
// and, when load says the value may be kept, keeps it for the next
// callers. It takes the ticket before load, so a value read before an
// invalidation is never kept after it. Values are shared: clone copies
// one on the way in and on the way out, so that no caller can change what
// another reads. hit reports whether the value came from n.
func GetOrLoad[T any](n *Near, group, key string, clone func(T) T, load func() (v T, keep bool, err error)) (v T, hit bool, err error) {
	val, ok, ticket := n.Get(group, key)
	if ok {
		return clone(val.(T)), true, nil
	}
	v, keep, err := load()
	if err == nil && keep {
		n.Fill(group, key, clone(v), ticket)
	}
	return v, false, err
}
