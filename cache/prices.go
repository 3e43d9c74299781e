package cache

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
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

// The price cache's keys share the hash tag {price}: on a Redis Cluster
// they all live in one slot, as its commands and transactions over
// several of them (a read of many lookup keys with the catalog version, a
// write under WATCH of that version, a delete of a product's keys) must:
// a cluster refuses keys of different slots (CROSSSLOT). The catalog is
// small; one node holds it easily.
func (p *Prices) keyFor(lookupKey string) string   { return p.prefix + "{price}:lk:" + lookupKey }
func (p *Prices) priceIndex(priceID string) string { return p.prefix + "{price}:id:" + priceID }
func (p *Prices) productIndex(productID string) string {
	return p.prefix + "{price}:product:" + productID
}

// versionKey counts the catalog's invalidations. A load writes its entries
// only if the count has not moved since the read that missed: a load that
// began before a price changed must not put the old price back after the
// change's invalidation (for a whole TTL).
func (p *Prices) versionKey() string { return p.prefix + "{price}:version" }

// Get returns the entries for lookupKeys, loading the ones the cache does
// not hold with load, and whether every entry returned is in Redis (read
// from it, or written to it by the load), which is what a cache in front
// of this one must know before keeping them. Concurrent calls missing the
// same keys share one load. When Redis fails, Get still answers through
// load and logs the degradation once (and the recovery once).
func (p *Prices) Get(ctx context.Context, lookupKeys []string, load PriceLoader) (map[string]PriceEntry, bool, error) {
	out := make(map[string]PriceEntry, len(lookupKeys))
	missing, version, redisOK := p.read(ctx, lookupKeys, out)
	if p.Observe != nil {
		p.Observe(len(lookupKeys)-len(missing), len(missing))
	}
	if len(missing) == 0 {
		return out, redisOK, nil
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	// Callers share a load only within one catalog version, so that a
	// caller who read after an invalidation never waits on, nor keeps, a
	// load begun before it; and only within one load class
	// (WithLoadClass).
	flightKey := LoadClass(ctx) + "\x00" + version + "\x00" + strings.Join(missing, "\x00")
	ch := p.flight.DoChan(flightKey, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		return p.loadMissing(lctx, missing, version, redisOK, load)
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

// loadMissing is one shared load: it reads Redis again, then loads what is
// still missing and writes it at version. The read closes the gap between
// a caller's own read and its joining the load: a caller that read before
// the previous load of these keys wrote them, and asked for a load after
// that load had finished (so there was none left to share), finds them in
// Redis here instead of calling Stripe again. Entries in Redis are always
// current (an invalidation deletes them), whatever the version now.
func (p *Prices) loadMissing(ctx context.Context, missing []string, version string, redisOK bool, load PriceLoader) (loadResult, error) {
	entries := make(map[string]PriceEntry, len(missing))
	if redisOK {
		if still, _, ok := p.read(ctx, missing, entries); ok {
			missing = still
		}
	}
	if len(missing) == 0 {
		return loadResult{entries, true}, nil
	}
	loaded, err := load(ctx, missing)
	if err != nil {
		return loadResult{}, err
	}
	stored := redisOK && p.write(ctx, loaded, version) == nil
	maps.Copy(entries, loaded)
	return loadResult{entries, stored}, nil
}

// loadResult is what one shared load returns to every caller waiting on
// it.
type loadResult struct {
	entries map[string]PriceEntry
	stored  bool // written to Redis (not refused as stale)
}

// read fills out with cached entries and returns the keys it lacks, the
// catalog version it read them at, and whether Redis answered.
func (p *Prices) read(ctx context.Context, lookupKeys []string, out map[string]PriceEntry) ([]string, string, bool) {
	if len(lookupKeys) == 0 {
		return nil, "", true
	}
	keys := make([]string, len(lookupKeys), len(lookupKeys)+1)
	for i, k := range lookupKeys {
		keys[i] = p.keyFor(k)
	}
	vals, err := p.rdb.MGet(ctx, append(keys, p.versionKey())...).Result()
	if err != nil {
		p.markDegraded(err)
		return slices.Clone(lookupKeys), "", false
	}
	p.markHealthy()
	version, _ := vals[len(lookupKeys)].(string)
	var missing []string
	for i, v := range vals[:len(lookupKeys)] {
		s, ok := v.(string)
		var e PriceEntry
		if !ok || json.Unmarshal([]byte(s), &e) != nil {
			missing = append(missing, lookupKeys[i])
			continue
		}
		out[lookupKeys[i]] = e
	}
	return missing, version, true
}

// errStaleLoad refuses a load's write after an invalidation.
var errStaleLoad = errors.New("price cache: the catalog changed during the load")

// write stores loaded entries with their TTLs and the indexes used for
// invalidation by price id and product id. A failure only costs a reload.
//
// It writes only while the catalog version is still version (WATCH): an
// invalidation since the read refuses it with errStaleLoad.
func (p *Prices) write(ctx context.Context, entries map[string]PriceEntry, version string) error {
	err := p.rdb.Watch(ctx, func(tx *redis.Tx) error {
		now, err := tx.Get(ctx, p.versionKey()).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if now != version {
			return errStaleLoad
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			p.queueWrite(ctx, pipe, entries)
			return nil
		})
		if errors.Is(err, redis.TxFailedErr) {
			return errStaleLoad // the version moved between GET and EXEC
		}
		return err
	}, p.versionKey())
	if err != nil && !errors.Is(err, errStaleLoad) {
		p.markDegraded(err)
	}
	return err
}

// queueWrite queues the writes of loaded entries on pipe.
func (p *Prices) queueWrite(ctx context.Context, pipe redis.Pipeliner, entries map[string]PriceEntry) {
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
}

// InvalidateLookupKeys drops the cached entries of lookup keys.
func (p *Prices) InvalidateLookupKeys(ctx context.Context, lookupKeys ...string) error {
	if len(lookupKeys) == 0 {
		return nil
	}
	return p.invalidate(ctx, func() ([]string, error) {
		keys := make([]string, len(lookupKeys))
		for i, k := range lookupKeys {
			keys[i] = p.keyFor(k)
		}
		return keys, nil
	})
}

// InvalidatePrice drops the cached entry of the lookup key a price id was
// cached under, if any.
func (p *Prices) InvalidatePrice(ctx context.Context, priceID string) error {
	return p.invalidate(ctx, func() ([]string, error) {
		lk, err := p.rdb.Get(ctx, p.priceIndex(priceID)).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		return []string{p.keyFor(lk), p.priceIndex(priceID)}, err
	})
}

// InvalidateProduct drops the cached entries of every lookup key whose
// price belongs to a product.
func (p *Prices) InvalidateProduct(ctx context.Context, productID string) error {
	return p.invalidate(ctx, func() ([]string, error) {
		lks, err := p.rdb.SMembers(ctx, p.productIndex(productID)).Result()
		keys := []string{p.productIndex(productID)}
		for _, lk := range lks {
			keys = append(keys, p.keyFor(lk))
		}
		return keys, err
	})
}

// invalidate drops the Redis keys that keys names, in this order: first
// the catalog version moves, so that a load that read before cannot write
// what it read after the deletes (write checks the version); then the
// keys are deleted; then the near cache's plans, decoded from what Redis
// held, are dropped on every replica. Every step is tried even when one
// before it failed.
func (p *Prices) invalidate(ctx context.Context, keys func() ([]string, error)) error {
	errs := []error{p.rdb.Incr(ctx, p.versionKey()).Err()}
	ks, err := keys()
	errs = append(errs, err)
	if len(ks) > 0 {
		errs = append(errs, p.rdb.Del(ctx, ks...).Err())
	}
	errs = append(errs, p.Near.Invalidate(ctx, PricesGroup))
	return errors.Join(errs...)
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

type loadClassKey struct{}

// WithLoadClass returns ctx with its price loads put in a class of their
// own: Get shares a load only among callers of one class, so that a load
// the loader may refuse for one kind of caller (anonymous callers over
// their budget) is never one that another caller waits on.
func WithLoadClass(ctx context.Context, class string) context.Context {
	return context.WithValue(ctx, loadClassKey{}, class)
}

// LoadClass returns the load class of ctx: "" when none was set.
func LoadClass(ctx context.Context) string {
	c, _ := ctx.Value(loadClassKey{}).(string)
	return c
}
