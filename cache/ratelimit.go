package cache

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RateLimiter counts actions per key in fixed one-minute windows in Redis,
// so that every replica shares one budget per user and per workspace.
type RateLimiter struct {
	rdb    redis.UniversalClient
	prefix string
	// PerMinute is the budget of each key per window.
	PerMinute int
}

// NewRateLimiter returns a limiter allowing perMinute actions per key.
func NewRateLimiter(rdb redis.UniversalClient, prefix string, perMinute int) *RateLimiter {
	return &RateLimiter{rdb: rdb, prefix: prefix, PerMinute: perMinute}
}

// incrWindow counts one action in KEYS[1] and sets the window's expiry on
// its first action; it returns the count.
var incrWindow = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// Allow counts one action for each key in order and reports whether all
// of them are within budget; when not, it returns how long until the
// window resets. It stops at the first key over budget, so that a caller
// past their own budget spends none of the keys after it.
// A Redis error is returned as is: callers fail closed.
func (l *RateLimiter) Allow(ctx context.Context, keys ...string) (bool, time.Duration, error) {
	now := time.Now()
	window := now.Truncate(time.Minute)
	retry := window.Add(time.Minute).Sub(now)
	for _, k := range keys {
		key := l.prefix + "rl:" + k + ":" + strconv.FormatInt(window.Unix(), 10)
		n, err := incrWindow.Run(ctx, l.rdb, []string{key}, (2 * time.Minute).Milliseconds()).Int()
		if err != nil {
			return false, 0, err
		}
		if n > l.PerMinute {
			return false, retry, nil
		}
	}
	return true, retry, nil
}
