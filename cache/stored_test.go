package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"billingapi/cache"
	"billingapi/internal/testenv"

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
		if _, stored, err := prices.Get(ctx, []string{"a", "b"}, load); err != nil || stored != wantStored {
			t.Errorf("%s: prices stored %v (err %v), want %v", when, stored, err, wantStored)
		}
		if _, stored, err := status.Load(ctx, "ws", loadStatus); err != nil || stored != wantStored {
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

// heldLoad is a price loader that, once called, closes started and waits
// for release before it answers entries and err: a load still running.
func heldLoad(entries map[string]cache.PriceEntry, err error) (load func(context.Context, []string) (map[string]cache.PriceEntry, error), started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	return func(context.Context, []string) (map[string]cache.PriceEntry, error) {
		close(started)
		<-release
		return entries, err
	}, started, release
}

// TestPriceLoadRacingAnInvalidation: a load that began before a price
// changed must not write the old price back after the change's
// invalidation (it would stand for a whole TTL), and a reader who came
// after the invalidation does not share that load.
func TestPriceLoadRacingAnInvalidation(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rdb, prefix := open(t)
			prices := cache.NewPrices(rdb, prefix, time.Hour, nil)
			entry := func(amount string) map[string]cache.PriceEntry {
				return map[string]cache.PriceEntry{"pro": {Found: true, PriceID: "price_pro", Data: []byte(amount)}}
			}
			slowOld, started, release := heldLoad(entry("900"), nil)
			type result struct {
				got    map[string]cache.PriceEntry
				stored bool
				err    error
			}
			first := make(chan result, 1)
			go func() {
				got, stored, err := prices.Get(ctx, []string{"pro"}, slowOld)
				first <- result{got, stored, err}
			}()
			<-started
			if err := prices.InvalidateLookupKeys(ctx, "pro"); err != nil { // the price changed meanwhile
				t.Fatal(err)
			}
			// A reader after the invalidation loads the new price itself.
			newLoads := 0
			got, stored, err := prices.Get(ctx, []string{"pro"}, func(context.Context, []string) (map[string]cache.PriceEntry, error) {
				newLoads++
				return entry("1200"), nil
			})
			if err != nil || newLoads != 1 || string(got["pro"].Data) != "1200" || !stored {
				t.Fatalf("reader after the invalidation: %q stored %v, %d loads, %v", got["pro"].Data, stored, newLoads, err)
			}
			close(release)
			r := <-first
			if r.err != nil || string(r.got["pro"].Data) != "900" || r.stored {
				t.Fatalf("the racing load: %q stored %v, %v; want its own answer, not stored", r.got["pro"].Data, r.stored, r.err)
			}
			// Redis holds the new price, not the racing load's old one.
			got, stored, err = prices.Get(ctx, []string{"pro"}, func(context.Context, []string) (map[string]cache.PriceEntry, error) {
				return nil, errors.New("must be a hit")
			})
			if err != nil || string(got["pro"].Data) != "1200" || !stored {
				t.Fatalf("after both loads Redis holds %q (stored %v, %v), want 1200", got["pro"].Data, stored, err)
			}
		})
	}
}

// TestPriceLoadsAreSharedWithinAClassOnly: a load in one class
// (WithLoadClass), which its loader may refuse for that class's callers,
// is not one a caller of another class waits on: the latter loads for
// itself, while callers of one class still share.
func TestPriceLoadsAreSharedWithinAClassOnly(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rdb, prefix := open(t)
			prices := cache.NewPrices(rdb, prefix, time.Hour, nil)
			refused := errors.New("over the anonymous budget")
			slowRefusal, started, release := heldLoad(nil, refused)
			anonymous := cache.WithLoadClass(ctx, "anonymous")
			first := make(chan error, 1)
			go func() {
				_, _, err := prices.Get(anonymous, []string{"pro"}, slowRefusal)
				first <- err
			}()
			<-started
			type result struct {
				got   map[string]cache.PriceEntry
				loads int
				err   error
			}
			second := make(chan result, 1)
			go func() {
				loads := 0
				got, _, err := prices.Get(ctx, []string{"pro"}, func(context.Context, []string) (map[string]cache.PriceEntry, error) {
					loads++
					return map[string]cache.PriceEntry{"pro": {Found: true, PriceID: "price_pro", Data: []byte("1200")}}, nil
				})
				second <- result{got, loads, err}
			}()
			var r result
			select {
			case r = <-second:
				close(release)
			case <-time.After(5 * time.Second):
				close(release) // it waits on the other class's load
				r = <-second
			}
			if r.err != nil || r.loads != 1 || string(r.got["pro"].Data) != "1200" {
				t.Fatalf("a caller of another class: %q, %d loads, %v; want its own load", r.got["pro"].Data, r.loads, r.err)
			}
			if err := <-first; !errors.Is(err, refused) {
				t.Fatalf("the refused class's caller: %v", err)
			}
		})
	}
}
