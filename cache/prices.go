package cache

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// NegativeTTL is how long an unknown lookup key is remembered as unknown.
const NegativeTTL = 30 * time.Second

// loadTimeout bounds one load shared by every caller waiting on it, so that
// one caller's cancelled request does not fail the others.
const loadTimeout = 30 * time.Second

// PriceEntry is what the cache keeps for one lookup key. Found is false for
// a key the catalog does not have (a negative entry). Data is the caller's
// encoding of the price; the cache does not look inside it.
type PriceEntry struct {
	Found     bool   `json:"found"`
	PriceID   string `json:"price_id,omitempty"`
	ProductID string `json:"product_id,omitempty"`
	Data      []byte `json:"data,omitempty"`
}

// PriceLoader fetches entries for lookup keys missing from the cache. It
// returns an entry for every key it was given (Found false for unknown
// keys).
type PriceLoader func(ctx context.Context, lookupKeys []string) (map[string]PriceEntry, error)

// Prices caches prices by lookup key in Redis with a TTL, collapses
// concurrent misses into one load, and keeps answering (by loading) when
// Redis is down.
type Prices struct {
	rdb      redis.UniversalClient
	prefix   string
	ttl      time.Duration
	log      *slog.Logger
	flight   singleflight.Group
	degraded atomic.Bool

	// Observe, when set before the cache is used, is told how many of
	// each Get's lookup keys were hits and misses (for metrics). A Redis
	// failure counts every key as a miss.
	Observe func(hits, misses int)
	// Near, when set before the cache is used, is the in-process cache
	// whose PricesGroup (decoded plans, kept by the billing service) every
	// invalidation below drops on every replica.
	Near *Near
}

// NewPrices returns a price cache whose Redis keys start with prefix.
func NewPrices(rdb redis.UniversalClient, prefix string, ttl time.Duration, log *slog.Logger) *Prices {
	if log == nil {
		log = slog.Default()
	}
	return &Prices{rdb: rdb, prefix: prefix, ttl: ttl, log: log}
}

func (p *Prices) keyFor(lookupKey string) string   { return p.prefix + "price:lk:" + lookupKey }
func (p *Prices) priceIndex(priceID string) string { return p.prefix + "price:id:" + priceID }
func (p *Prices) productIndex(productID string) string {
	return p.prefix + "price:product:" + productID
}

// Get returns the entries for lookupKeys, loading the ones the cache does
// not hold with load. Concurrent calls missing the same keys share one
// load. When Redis fails, Get still answers through load and logs the
// degradation once (and the recovery once).
func (p *Prices) Get(ctx context.Context, lookupKeys []string, load PriceLoader) (map[string]PriceEntry, error) {
	out, _, err := p.GetStored(ctx, lookupKeys, load)
	return out, err
}

// GetStored is Get, and reports whether every entry returned is in Redis
// (read from it, or written to it by the load), which is what a cache in
// front of this one must know before keeping them.
func (p *Prices) GetStored(ctx context.Context, lookupKeys []string, load PriceLoader) (map[string]PriceEntry, bool, error) {
	out := make(map[string]PriceEntry, len(lookupKeys))
	missing, redisOK := p.read(ctx, lookupKeys, out)
	if p.Observe != nil {
		p.Observe(len(lookupKeys)-len(missing), len(missing))
	}
	if len(missing) == 0 {
		return out, redisOK, nil
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	flightKey := strings.Join(missing, "\x00")
	ch := p.flight.DoChan(flightKey, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		loaded, err := load(lctx, missing)
		if err != nil {
			return nil, err
		}
		stored := redisOK && p.write(lctx, loaded) == nil
		return loadResult{loaded, stored}, nil
	})
	select {
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, false, res.Err
		}
		r := res.Val.(loadResult)
		for k, e := range r.entries {
			out[k] = e
		}
		return out, redisOK && r.stored, nil
	}
}

// loadResult is what one shared load returns to every caller waiting on
// it.
type loadResult struct {
	entries map[string]PriceEntry
	stored  bool // written to Redis
}

// read fills out with cached entries and returns the keys it lacks and
// whether Redis answered.
func (p *Prices) read(ctx context.Context, lookupKeys []string, out map[string]PriceEntry) ([]string, bool) {
	if len(lookupKeys) == 0 {
		return nil, true
	}
	keys := make([]string, len(lookupKeys))
	for i, k := range lookupKeys {
		keys[i] = p.keyFor(k)
	}
	vals, err := p.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		p.markDegraded(err)
		return slices.Clone(lookupKeys), false
	}
	p.markHealthy()
	var missing []string
	for i, v := range vals {
		s, ok := v.(string)
		var e PriceEntry
		if !ok || json.Unmarshal([]byte(s), &e) != nil {
			missing = append(missing, lookupKeys[i])
			continue
		}
		out[lookupKeys[i]] = e
	}
	return missing, true
}

// write stores loaded entries with their TTLs and the indexes used for
// invalidation by price id and product id. A failure only costs a reload.
func (p *Prices) write(ctx context.Context, entries map[string]PriceEntry) error {
	_, err := p.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for k, e := range entries {
			b, _ := json.Marshal(e)
			if !e.Found {
				pipe.Set(ctx, p.keyFor(k), b, NegativeTTL)
				continue
			}
			pipe.Set(ctx, p.keyFor(k), b, p.ttl)
			if e.PriceID != "" {
				pipe.Set(ctx, p.priceIndex(e.PriceID), k, p.ttl)
			}
			if e.ProductID != "" {
				pipe.SAdd(ctx, p.productIndex(e.ProductID), k)
				pipe.Expire(ctx, p.productIndex(e.ProductID), p.ttl)
			}
		}
		return nil
	})
	if err != nil {
		p.markDegraded(err)
	}
	return err
}

// InvalidateLookupKeys drops the cached entries of lookup keys.
func (p *Prices) InvalidateLookupKeys(ctx context.Context, lookupKeys ...string) error {
	if len(lookupKeys) == 0 {
		return nil
	}
	keys := make([]string, len(lookupKeys))
	for i, k := range lookupKeys {
		keys[i] = p.keyFor(k)
	}
	return p.dropNear(ctx, p.rdb.Del(ctx, keys...).Err())
}

// dropNear invalidates the near cache's plans after a Redis invalidation
// (err is that invalidation's result): they were decoded from what Redis
// held.
func (p *Prices) dropNear(ctx context.Context, err error) error {
	return errors.Join(err, p.Near.Invalidate(ctx, PricesGroup))
}

// InvalidatePrice drops the cached entry of the lookup key a price id was
// cached under, if any.
func (p *Prices) InvalidatePrice(ctx context.Context, priceID string) error {
	lk, err := p.rdb.Get(ctx, p.priceIndex(priceID)).Result()
	if errors.Is(err, redis.Nil) {
		return p.dropNear(ctx, nil)
	}
	if err != nil {
		return p.dropNear(ctx, err)
	}
	return p.dropNear(ctx, p.rdb.Del(ctx, p.keyFor(lk), p.priceIndex(priceID)).Err())
}

// InvalidateProduct drops the cached entries of every lookup key whose
// price belongs to a product.
func (p *Prices) InvalidateProduct(ctx context.Context, productID string) error {
	lks, err := p.rdb.SMembers(ctx, p.productIndex(productID)).Result()
	if err != nil {
		return p.dropNear(ctx, err)
	}
	keys := []string{p.productIndex(productID)}
	for _, lk := range lks {
		keys = append(keys, p.keyFor(lk))
	}
	return p.dropNear(ctx, p.rdb.Del(ctx, keys...).Err())
}

// CountHits reports n lookups answered from the near cache as hits.
func (p *Prices) CountHits(n int) {
	if p.Observe != nil {
		p.Observe(n, 0)
	}
}

func (p *Prices) markDegraded(err error) {
	if p.degraded.CompareAndSwap(false, true) {
		p.log.Warn("price cache: Redis unavailable; reading prices from Stripe until it returns", "err", err)
	}
}

func (p *Prices) markHealthy() {
	if p.degraded.CompareAndSwap(true, false) {
		p.log.Info("price cache: Redis is back")
	}
}
