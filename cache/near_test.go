package cache_test

import (
	"context"
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
	for name, open := range redises(t) {
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
				for i := range 1100 {
					fill(a, "big", fmt.Sprint(i), i)
				}
				if v := held(a, "big", "1099"); v != 1099 {
					t.Fatalf("the newest entry of a full group: %v", v)
				}
				if v := held(a, "big", "0"); v != nil {
					t.Errorf("a group past its bound still holds its first entry: %v", v)
				}
			})
		})
	}
}

func TestNearCacheTTL(t *testing.T) {
	rdb, prefix := redises(t)["Redis"](t)
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
