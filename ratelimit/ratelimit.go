// Package ratelimit counts actions per key in one-minute windows in Redis,
// shared by every replica: the per-caller and per-workspace budgets of the
// mutations that call Stripe, and the shared budget of anonymous price
// lookups that reach Stripe.
package ratelimit

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter counts actions per key in fixed one-minute windows in Redis,
// so that every replica shares one budget per user and per workspace.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	// PerMinute is the budget of each key per window.
	PerMinute int
}

// New returns a limiter allowing perMinute actions per key.
func New(rdb redis.UniversalClient, prefix string, perMinute int) *Limiter {
	return &Limiter{rdb: rdb, prefix: prefix, PerMinute: perMinute}
}

// incrWindow counts one action in KEYS[1] and sets the window's expiry on
// its first action; it returns the count.
var incrWindow = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// decrWindow uncounts one action in KEYS[1] while the window's key lives
// and holds a count above zero; a key gone with its window stays gone.
var decrWindow = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0`)

// Counted is one action that Take counted, for GiveBack.
type Counted struct {
	// windowKey is the Redis key of the window it was counted in.
	windowKey string
}

// windowKey returns the Redis key counting key's actions in the window
// that holds now, and how long until that window ends.
func (l *Limiter) windowKey(key string, now time.Time) (string, time.Duration) {
	window := now.Truncate(time.Minute)
	return l.prefix + "rl:" + key + ":" + strconv.FormatInt(window.Unix(), 10), window.Add(time.Minute).Sub(now)
}

// Take counts one action for key and reports whether it is within budget;
// when not, it returns how long until the window resets. The action is
// counted either way (a refused one only pushes the count further past
// the budget, which resets with the window). A Redis error is returned as
// is: callers fail closed.
func (l *Limiter) Take(ctx context.Context, key string) (Counted, bool, time.Duration, error) {
	wk, retry := l.windowKey(key, time.Now())
	n, err := incrWindow.Run(ctx, l.rdb, []string{wk}, (2 * time.Minute).Milliseconds()).Int()
	if err != nil {
		return Counted{}, false, 0, err
	}
	return Counted{windowKey: wk}, n <= l.PerMinute, retry, nil
}

// GiveBack uncounts an action that Take counted, in the window it was
// counted in: the action turned out not to be one the budget is for. An
// action of a window that has ended is not carried into the next one.
func (l *Limiter) GiveBack(ctx context.Context, c Counted) error {
	if c.windowKey == "" {
		return nil
	}
	return decrWindow.Run(ctx, l.rdb, []string{c.windowKey}).Err()
}

// Allow counts one action for each key in order and reports whether all
// of them are within budget; when not, it returns how long until the
// window resets. It stops at the first key over budget, so that a caller
// past their own budget spends none of the keys after it.
// A Redis error is returned as is: callers fail closed.
func (l *Limiter) Allow(ctx context.Context, keys ...string) (bool, time.Duration, error) {
	_, retry := l.windowKey("", time.Now())
	for _, k := range keys {
		_, allowed, r, err := l.Take(ctx, k)
		if err != nil {
			return false, 0, err
		}
		if !allowed {
			return false, r, nil
		}
	}
	return true, retry, nil
}

// Spent returns how many actions key has counted in the current window
// (tests and diagnostics).
func (l *Limiter) Spent(ctx context.Context, key string) (int, error) {
	wk, _ := l.windowKey(key, time.Now())
	n, err := l.rdb.Get(ctx, wk).Int()
	if err == redis.Nil {
		return 0, nil
	}
	return n, err
}
