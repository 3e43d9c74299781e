package cache_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/cache"
	"billingapi/internal/testenv"

	"github.com/redis/go-redis/v9"
)

// startNear starts a near cache and waits until its subscription is
// confirmed.
func startNear(t *testing.T, n *cache.Near) {
	t.Helper()
	n.Start(context.Background())
	t.Cleanup(n.Close)
	waitFor(t, 5*time.Second, "the near cache to turn on", n.Enabled)
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fill stores val the way a reader does: a missing Get, then Fill with its
// ticket.
func fill(n *cache.Near, group, key string, val any) {
	_, _, ticket := n.Get(group, key)
	n.Fill(group, key, val, ticket)
}

func held(n *cache.Near, group, key string) any {
	v, ok, _ := n.Get(group, key)
	if !ok {
		return nil
	}
	return v
}

func TestNearCache(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			rdb, prefix := open(t)
			// Two replicas: a minute's TTL, so that only an invalidation
			// can explain an entry's disappearance.
			a := cache.NewNear(rdb, prefix, time.Minute, nil)
			b := cache.NewNear(rdb, prefix, time.Minute, nil)

			t.Run("OffUntilSubscribed", func(t *testing.T) {
				fill(a, "g", "k", 1)
				if v := held(a, "g", "k"); v != nil {
					t.Fatalf("a near cache that has not subscribed holds %v", v)
				}
			})
			startNear(t, a)
			startNear(t, b)

			t.Run("HitAfterFill", func(t *testing.T) {
				fill(a, "g", "k", 1)
				if v := held(a, "g", "k"); v != 1 {
					t.Fatalf("after a fill: %v, want 1", v)
				}
			})
			t.Run("InvalidationReachesEveryReplica", func(t *testing.T) {
				fill(a, "ws:1", "status", "old")
				fill(b, "ws:1", "status", "old")
				fill(b, "ws:2", "status", "other")
				if err := a.Invalidate(context.Background(), "ws:1"); err != nil {
					t.Fatal(err)
				}
				if v := held(a, "ws:1", "status"); v != nil {
					t.Errorf("the writer still holds %v after its own invalidation", v)
				}
				waitFor(t, 2*time.Second, "the other replica to drop ws:1", func() bool { return held(b, "ws:1", "status") == nil })
				if v := held(b, "ws:2", "status"); v != "other" {
					t.Errorf("another group was dropped too: %v", v)
				}
			})
			t.Run("SeveralGroupsAtOnce", func(t *testing.T) {
				// One call, one round trip: every group named is dropped
				// everywhere, and only those.
				for _, g := range []string{"ws:5", "ws:6", "ws:7"} {
					fill(b, g, "status", "old")
				}
				if err := a.Invalidate(context.Background(), "ws:5", "ws:6"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 2*time.Second, "the other replica to drop ws:5 and ws:6", func() bool {
					return held(b, "ws:5", "status") == nil && held(b, "ws:6", "status") == nil
				})
				if v := held(b, "ws:7", "status"); v != "old" {
					t.Errorf("a group not named was dropped too: %v", v)
				}
			})
			t.Run("AllGroups", func(t *testing.T) {
				fill(b, "ws:3", "k", 3)
				fill(b, cache.PricesGroup, "plans", 4)
				if err := a.Invalidate(context.Background(), cache.AllGroups); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 2*time.Second, "every group to be dropped", func() bool {
					return held(b, "ws:3", "k") == nil && held(b, cache.PricesGroup, "plans") == nil
				})
			})
			t.Run("FillAfterAnInvalidationIsRefused", func(t *testing.T) {
				// A reader misses, reads the old value from the source; the
				// writer changes it and invalidates; the reader's fill
				// must not put the old value back.
				_, _, ticket := a.Get("ws:4", "status")
				if err := a.Invalidate(context.Background(), "ws:4"); err != nil {
					t.Fatal(err)
				}
				a.Fill("ws:4", "status", "stale", ticket)
				if v := held(a, "ws:4", "status"); v != nil {
					t.Fatalf("a fill that started before an invalidation landed: %v", v)
				}
				// A remote invalidation refuses it as well.
				_, _, ticket = b.Get("ws:4", "status")
				if err := a.Invalidate(context.Background(), "ws:4"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 2*time.Second, "the remote invalidation", func() bool {
					_, _, now := b.Get("ws:4", "status")
					return now != ticket
				})
				b.Fill("ws:4", "status", "stale", ticket)
				if v := held(b, "ws:4", "status"); v != nil {
					t.Fatalf("a fill that started before a remote invalidation landed: %v", v)
				}
			})
			t.Run("GroupsAreBounded", func(t *testing.T) {
				fill(a, "neighbour", "status", "kept")
				for i := range 1100 {
					fill(a, "big", fmt.Sprint(i), i)
				}
				if v := held(a, "big", "1099"); v != 1099 {
					t.Fatalf("the newest entry of a full group: %v", v)
				}
				n := 0
				for i := range 1100 {
					if held(a, "big", fmt.Sprint(i)) != nil {
						n++
					}
				}
				// A full group makes room one entry at a time: it is never
				// emptied, so its other entries (a workspace's status)
				// survive one reader's many keys.
				if n != 1024 {
					t.Errorf("a group filled with 1,100 entries holds %d, want its bound, 1,024", n)
				}
				if v := held(a, "neighbour", "status"); v != "kept" {
					t.Errorf("filling one group dropped another's entry: %v", v)
				}
			})
		})
	}
}

func TestNearCacheTTL(t *testing.T) {
	rdb, prefix := testenv.Redises(t)["Redis"](t)
	n := cache.NewNear(rdb, prefix, 50*time.Millisecond, nil)
	startNear(t, n)
	fill(n, "g", "k", 1)
	if v := held(n, "g", "k"); v != 1 {
		t.Fatalf("fresh entry: %v", v)
	}
	time.Sleep(80 * time.Millisecond)
	if v := held(n, "g", "k"); v != nil {
		t.Fatalf("an entry past its TTL: %v", v)
	}
}

// TestNearCacheMemoryBudget: what the entries cost stays within MaxBytes,
// however many distinct keys are filled, and leaves with their groups.
func TestNearCacheMemoryBudget(t *testing.T) {
	rdb, prefix := testenv.Redises(t)["Embedded"](t)
	n := cache.NewNear(rdb, prefix, time.Minute, nil)
	n.MaxBytes = 64 << 10
	startNear(t, n)
	if b := n.Bytes(); b != 0 {
		t.Fatalf("an empty near cache costs %d bytes", b)
	}
	answer := make([]byte, 1000)
	for i := range 1000 { // about 1 MiB of answers, in 100 groups
		fill(n, fmt.Sprintf("ws:%d", i%100), fmt.Sprintf("response:%d", i), answer)
		if b := n.Bytes(); b > n.MaxBytes {
			t.Fatalf("after %d fills the near cache costs %d bytes, over its budget of %d", i+1, b, n.MaxBytes)
		}
	}
	if held(n, "ws:99", "response:999") == nil {
		t.Fatal("the newest entry was not kept")
	}
	kept := 0
	for i := range 1000 {
		if held(n, fmt.Sprintf("ws:%d", i%100), fmt.Sprintf("response:%d", i)) != nil {
			kept++
		}
	}
	// Each entry costs its 1,000 bytes, its key and some overhead; the
	// budget holds about 56 of them, and evicting stops at 90% of it, so
	// most of the budget stays in use.
	if kept < 40 || kept > 64 {
		t.Errorf("the budget of 64 KiB holds %d entries of 1,000 bytes, want 40..64", kept)
	}
	before := n.Bytes()
	if err := n.Invalidate(context.Background(), "ws:99"); err != nil {
		t.Fatal(err)
	}
	if after := n.Bytes(); after >= before {
		t.Errorf("dropping a group left the cost at %d (was %d)", after, before)
	}
	if err := n.Invalidate(context.Background(), cache.AllGroups); err != nil {
		t.Fatal(err)
	}
	if b := n.Bytes(); b != 0 {
		t.Errorf("after dropping every group the near cache costs %d bytes", b)
	}
	// Refilling a key replaces its cost instead of adding to it.
	fill(n, "g", "k", answer)
	one := n.Bytes()
	fill(n, "g", "k", answer)
	if b := n.Bytes(); b != one {
		t.Errorf("filling a key twice costs %d bytes, once %d", b, one)
	}
}

// TestNearCacheSweepsExpiredEntries: entries nobody reads again leave
// memory within about a TTL, without waiting for the budget to fill.
func TestNearCacheSweepsExpiredEntries(t *testing.T) {
	rdb, prefix := testenv.Redises(t)["Embedded"](t)
	n := cache.NewNear(rdb, prefix, 50*time.Millisecond, nil)
	n.PingEvery = 20 * time.Millisecond
	startNear(t, n)
	for i := range 100 {
		fill(n, fmt.Sprintf("ws:%d", i), "status", i)
	}
	if n.Bytes() == 0 {
		t.Fatal("nothing was filled")
	}
	waitFor(t, 2*time.Second, "expired entries to be swept", func() bool { return n.Bytes() == 0 })
}

// TestNearCacheFillUntil: a value built from other entries expires with
// the first of them, and GetOrLoad tells a WithFillHint caller both what
// it must not keep and when what it read expires.
func TestNearCacheFillUntil(t *testing.T) {
	rdb, prefix := testenv.Redises(t)["Embedded"](t)
	n := cache.NewNear(rdb, prefix, time.Minute, nil)
	startNear(t, n)
	ctx := context.Background()

	_, _, ticket := n.Get("g", "soon")
	n.FillUntil("g", "soon", 1, ticket, time.Now().Add(time.Second))
	if v := held(n, "g", "soon"); v != 1 {
		t.Fatalf("an entry with a near bound, just filled: %v", v)
	}
	// The TTL is a minute: only the bound can explain the entry leaving.
	waitFor(t, 3*time.Second, "an entry to leave at its bound", func() bool { return held(n, "g", "soon") == nil })
	_, _, ticket = n.Get("g", "past")
	n.FillUntil("g", "past", 1, ticket, time.Now().Add(-time.Millisecond))
	if v := held(n, "g", "past"); v != nil {
		t.Fatalf("an entry whose bound had passed was kept: %v", v)
	}

	id := func(v int) int { return v }
	load := func(v int, keep bool) func() (int, bool, error) {
		return func() (int, bool, error) { return v, keep, nil }
	}
	// A miss that loads a value to keep: the reader's answer may live no
	// longer than the entry just filled.
	hinted, kept := cache.WithFillHint(ctx)
	start := time.Now()
	if v, hit, err := cache.GetOrLoad(hinted, n, "g", "a", id, load(7, true)); err != nil || hit || v != 7 {
		t.Fatalf("first read: %v, hit %v, %v", v, hit, err)
	}
	if keep, until := kept(); !keep || until.Before(start.Add(50*time.Second)) || until.After(time.Now().Add(time.Minute)) {
		t.Fatalf("after a miss that loaded: keep %v, until %v; want true and the filled entry's expiry, a minute on", keep, until)
	}
	// A hit: the reader's answer may live no longer than the entry.
	hinted, kept = cache.WithFillHint(ctx)
	start = time.Now()
	if v, hit, err := cache.GetOrLoad(hinted, n, "g", "a", id, load(8, true)); err != nil || !hit || v != 7 {
		t.Fatalf("second read: %v, hit %v, %v", v, hit, err)
	}
	if keep, until := kept(); !keep || until.IsZero() || until.After(start.Add(time.Minute)) || until.Before(start.Add(50*time.Second)) {
		t.Fatalf("after a hit: keep %v, until %v; want true and the entry's expiry, a minute after its fill", keep, until)
	}
	// A value load says not to keep: nor may anything built from it.
	hinted, kept = cache.WithFillHint(ctx)
	if v, hit, err := cache.GetOrLoad(hinted, n, "g", "b", id, load(9, false)); err != nil || hit || v != 9 {
		t.Fatalf("a read not to keep: %v, hit %v, %v", v, hit, err)
	}
	if keep, _ := kept(); keep {
		t.Fatal("a value load would not keep did not stop what was built from it being kept")
	}
	if v := held(n, "g", "b"); v != nil {
		t.Fatalf("a value load would not keep was kept: %v", v)
	}
	// An error is neither kept nor marked.
	hinted, kept = cache.WithFillHint(ctx)
	boom := errors.New("boom")
	if _, _, err := cache.GetOrLoad(hinted, n, "g", "c", id, func() (int, bool, error) { return 0, true, boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed load: %v", err)
	}
	if v := held(n, "g", "c"); v != nil {
		t.Fatalf("a failed load was kept: %v", v)
	}
	if keep, _ := kept(); !keep {
		t.Error("a failed load marked the hint; the caller's own error handling decides")
	}
}

// TestNearCacheRedisOutage: while the invalidation subscription is down a
// replica could miss an invalidation, so the near cache holds nothing; it
// turns back on once go-redis has subscribed again.
func TestNearCacheRedisOutage(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb, closeFn, err := cache.Open(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	n := cache.NewNear(rdb, "outage:", time.Minute, nil)
	startNear(t, n)
	fill(n, "g", "k", 1)
	if v := held(n, "g", "k"); v != 1 {
		t.Fatalf("before the outage: %v", v)
	}

	srv.Kill()
	waitFor(t, 10*time.Second, "the near cache to turn off", func() bool { return !n.Enabled() })
	if v := held(n, "g", "k"); v != nil {
		t.Fatalf("during the outage the near cache still answers %v", v)
	}
	fill(n, "g", "k", 2)
	if v := held(n, "g", "k"); v != nil {
		t.Fatalf("during the outage a fill landed: %v", v)
	}

	srv.Start()
	waitFor(t, 15*time.Second, "the near cache to turn back on", n.Enabled)
	if v := held(n, "g", "k"); v != nil {
		t.Fatalf("an entry from before the outage survived it: %v", v)
	}
	// The new subscription carries invalidations again.
	other := cache.NewNear(rdb, "outage:", time.Minute, nil)
	startNear(t, other)
	fill(n, "g", "k", 3)
	if err := other.Invalidate(context.Background(), "g"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "an invalidation after the outage", func() bool { return held(n, "g", "k") == nil })
}

// stallProxy forwards TCP connections to a server and can stall them:
// while stalled, nothing goes through either way, but no connection is
// closed, as when a NAT entry on the path is dropped.
type stallProxy struct {
	addr    string
	stalled atomic.Bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String()}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	t.Cleanup(func() { p.stalled.Store(false) }) // runs first: let the pipes end
	pipe := func(dst, src net.Conn) {
		defer conns.Done()
		defer dst.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for p.stalled.Load() {
				time.Sleep(5 * time.Millisecond)
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Add(2)
			go pipe(s, c)
			go pipe(c, s)
			t.Cleanup(func() { c.Close(); s.Close() })
		}
	}()
	return p
}

// TestNearCacheSilentConnection: a subscription whose connection stops
// carrying anything without being closed (go-redis sees no error) turns
// the cache off once a ping goes unanswered, and a new subscription turns
// it back on when the path works again.
func TestNearCacheSilentConnection(t *testing.T) {
	url, prefix := testenv.Redis(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newStallProxy(t, opts.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.addr, DB: opts.DB, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	n := cache.NewNear(rdb, prefix, time.Minute, nil)
	n.PingEvery = 100 * time.Millisecond
	startNear(t, n)
	fill(n, "g", "k", 1)
	if v := held(n, "g", "k"); v != 1 {
		t.Fatalf("before the stall: %v", v)
	}

	proxy.stalled.Store(true)
	waitFor(t, 3*time.Second, "the near cache to turn off on a silent connection", func() bool { return !n.Enabled() })
	if v := held(n, "g", "k"); v != nil {
		t.Fatalf("with the subscription silent the cache still answers %v", v)
	}
	proxy.stalled.Store(false)
	waitFor(t, 5*time.Second, "the near cache to turn back on", n.Enabled)
}
