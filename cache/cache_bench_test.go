package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"billingapi/cache"
	"billingapi/internal/testenv"

	"github.com/redis/go-redis/v9"
)

// benchRedises are the Redis servers the cache benchmarks run on: the
// real one (what production pays: a loopback round trip) and the
// embedded one (`make run`).
func benchRedises() []struct {
	name string
	open func(b *testing.B) (redis.UniversalClient, string)
} {
	return []struct {
		name string
		open func(b *testing.B) (redis.UniversalClient, string)
	}{
		{"Redis", func(b *testing.B) (redis.UniversalClient, string) {
			url, prefix := testenv.Redis(b)
			c, closeFn, err := cache.Open(url)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = closeFn() })
			return c, prefix
		}},
		{"Embedded", func(b *testing.B) (redis.UniversalClient, string) {
			c, closeFn, err := cache.Open("")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = closeFn() })
			return c, "embedded:"
		}},
	}
}

var errNoLoad = errors.New("a hit must not load")

// BenchmarkPriceCacheHit is plans' cache read: the three lookup keys of a
// catalog, all cached (one MGET and three entries decoded).
func BenchmarkPriceCacheHit(b *testing.B) {
	ctx := context.Background()
	keys := []string{"starter_monthly", "pro_monthly", "pro_yearly"}
	plan, _ := json.Marshal(map[string]any{"lookup_key": "pro_monthly", "price_id": "price_pro_monthly", "unit_amount": 2900,
		"currency": "usd", "interval": "month", "interval_count": 1,
		"product": map[string]any{"id": "prod_pro", "name": "Pro", "plan": "pro", "features": []string{"projects", "sso"}}})
	for _, r := range benchRedises() {
		b.Run(r.name, func(b *testing.B) {
			rdb, prefix := r.open(b)
			p := cache.NewPrices(rdb, prefix, time.Hour, nil)
			_, _, err := p.Get(ctx, keys, func(_ context.Context, missing []string) (map[string]cache.PriceEntry, error) {
				out := map[string]cache.PriceEntry{}
				for _, k := range missing {
					out[k] = cache.PriceEntry{Found: true, PriceID: "price_" + k, ProductID: "prod_pro", Data: plan}
				}
				return out, nil
			})
			if err != nil {
				b.Fatal(err)
			}
			fail := func(context.Context, []string) (map[string]cache.PriceEntry, error) { return nil, errNoLoad }
			b.ReportAllocs()
			for b.Loop() {
				got, _, err := p.Get(ctx, keys, fail)
				if err != nil || len(got) != len(keys) {
					b.Fatalf("%d entries, %v", len(got), err)
				}
			}
		})
	}
}

// BenchmarkStatusCacheHit is a workspace's billing status read from its
// snapshot (one HGET).
func BenchmarkStatusCacheHit(b *testing.B) {
	ctx := context.Background()
	snapshot, _ := json.Marshal(map[string]any{"version": 3,
		"subscription": map[string]any{"id": "0b9e6a44-5a6e-4d4f-9d38-6f2f3c3f6a11", "stripe_subscription_id": "sub_123",
			"status": "active", "plan": "pro", "lookup_key": "pro_monthly", "quantity": 1, "cancel_at_period_end": false},
		"access": map[string]any{"level": "FULL", "features": []string{"projects", "sso"}}})
	for _, r := range benchRedises() {
		b.Run(r.name, func(b *testing.B) {
			rdb, prefix := r.open(b)
			st := cache.NewStatus(rdb, prefix, nil)
			st.Store(ctx, "ws1", 3, snapshot)
			fail := func(context.Context) (int64, []byte, error) { return 0, nil, errNoLoad }
			b.ReportAllocs()
			for b.Loop() {
				if got, _, err := st.Load(ctx, "ws1", fail); err != nil || len(got) != len(snapshot) {
					b.Fatalf("%q, %v", got, err)
				}
			}
		})
	}
}

// BenchmarkNearCacheHit is what a warm plans or status read costs now: a
// lookup in the replica's near cache, no Redis round trip.
func BenchmarkNearCacheHit(b *testing.B) {
	rdb, prefix := benchRedises()[1].open(b) // the subscription only needs to exist
	n := cache.NewNear(rdb, prefix, time.Minute, nil)
	n.Start(context.Background())
	b.Cleanup(n.Close)
	for !n.Enabled() {
		time.Sleep(time.Millisecond)
	}
	group := cache.WorkspaceGroup("0b9e6a44-5a6e-4d4f-9d38-6f2f3c3f6a11")
	_, _, ticket := n.Get(group, "status")
	n.Fill(group, "status", struct{ level string }{"FULL"}, ticket)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := n.Get(group, "status"); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkNearCacheFillOverBudget is a fill into a near cache held at its
// memory budget (distinct keys, as many users' distinct queries would be):
// eviction must stay amortised, not a scan of every entry per fill.
func BenchmarkNearCacheFillOverBudget(b *testing.B) {
	rdb, prefix := benchRedises()[1].open(b)
	n := cache.NewNear(rdb, prefix, time.Minute, nil)
	n.MaxBytes = 4 << 20
	n.Start(context.Background())
	b.Cleanup(n.Close)
	for !n.Enabled() {
		time.Sleep(time.Millisecond)
	}
	answer := make([]byte, 300)
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("response:%d", i)
	}
	groups := make([]string, 512)
	for i := range groups {
		groups[i] = cache.WorkspaceGroup(fmt.Sprint(i))
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		g, k := groups[i%len(groups)], keys[i%len(keys)]
		_, _, ticket := n.Get(g, k)
		n.Fill(g, k, answer, ticket)
		i++
	}
}
