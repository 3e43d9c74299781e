package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// TestLoadAfterTheLoadBeforeIt is the thundering herd's gap: a caller read
// Redis and missed just before the shared load of the same keys wrote
// them, and asked for a load just after that load had finished, so there
// was none left to share. Its load must find the keys in Redis rather
// than call Stripe a second time (B3 in bench/ counted two calls per key
// once, with 1,000 concurrent callers on 2 cores).
func TestLoadAfterTheLoadBeforeIt(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	p := NewPrices(rdb, "t:", time.Hour, nil)

	// The late caller's read: both keys missing, at the version then.
	missing, version, redisOK := p.read(ctx, []string{"pro", "starter"}, map[string]PriceEntry{})
	if len(missing) != 2 || !redisOK {
		t.Fatalf("read %v (Redis answered %v), want both keys missing", missing, redisOK)
	}
	// The load before it writes "pro" (the one it was asked for) and ends.
	stripeCalls := 0
	load := func(_ context.Context, keys []string) (map[string]PriceEntry, error) {
		stripeCalls++
		out := map[string]PriceEntry{}
		for _, k := range keys {
			out[k] = PriceEntry{Found: true, PriceID: "price_" + k, Data: []byte(`{}`)}
		}
		return out, nil
	}
	if _, _, err := p.Get(ctx, []string{"pro"}, load); err != nil || stripeCalls != 1 {
		t.Fatalf("the load before: %d calls, %v", stripeCalls, err)
	}

	// The late caller's own load loads only what Redis still lacks.
	var asked []string
	r, err := p.loadMissing(ctx, missing, version, redisOK, func(ctx context.Context, keys []string) (map[string]PriceEntry, error) {
		asked = keys
		return load(ctx, keys)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != "starter" {
		t.Errorf("the late load asked Stripe for %v, want only [starter]", asked)
	}
	if r.entries["pro"].PriceID != "price_pro" || r.entries["starter"].PriceID != "price_starter" || !r.stored {
		t.Errorf("the late load returned %v (stored %v), want both entries, stored", r.entries, r.stored)
	}

	// Once everything is in Redis, a late load calls nothing.
	r, err = p.loadMissing(ctx, missing, version, redisOK, func(context.Context, []string) (map[string]PriceEntry, error) {
		return nil, errors.New("called Stripe for keys Redis holds")
	})
	if err != nil || len(r.entries) != 2 || !r.stored {
		t.Errorf("a late load with every key in Redis: %v (stored %v), %v", r.entries, r.stored, err)
	}
}
