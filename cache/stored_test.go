package cache_test

import (
	"context"
	"testing"

	"billingapi/cache"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestStoredFlags: the price and status caches tell a cache in front of
// them (the near cache) whether Redis holds what they return, so that a
// value read while Redis fails is not kept in memory while Redis stays
// empty.
func TestStoredFlags(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })

	prices := cache.NewPrices(rdb, "t:", 0, nil)
	load := func(_ context.Context, keys []string) (map[string]cache.PriceEntry, error) {
		out := map[string]cache.PriceEntry{}
		for _, k := range keys {
			out[k] = cache.PriceEntry{Found: true, PriceID: "price_" + k, Data: []byte(`{}`)}
		}
		return out, nil
	}
	status := cache.NewStatus(rdb, "t:", nil)
	loadStatus := func(context.Context) (int64, []byte, error) { return 1, []byte("s"), nil }

	check := func(when string, wantStored bool) {
		t.Helper()
		if _, stored, err := prices.GetStored(ctx, []string{"a", "b"}, load); err != nil || stored != wantStored {
			t.Errorf("%s: prices stored %v (err %v), want %v", when, stored, err, wantStored)
		}
		if _, stored, err := status.LoadStored(ctx, "ws", loadStatus); err != nil || stored != wantStored {
			t.Errorf("%s: status stored %v (err %v), want %v", when, stored, err, wantStored)
		}
	}
	check("a miss loaded and written", true)
	check("a hit", true)
	mr.FlushAll()
	mr.SetError("LOADING Redis is loading the dataset in memory")
	check("Redis failing", false)
	mr.SetError("")
	check("Redis back", true)
}
