package cache

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// StatusTTL bounds how long a status snapshot lives even if a write-through
// was lost (Redis restarted mid-change): the next read rebuilds it.
const StatusTTL = 10 * time.Minute

// Status keeps one billing snapshot per workspace (its subscription and
// access, encoded by the caller) in Redis. Every state change writes the
// new snapshot through; a read that misses loads it from the database and
// fills it. Each snapshot carries the workspace's billing version, and a
// write only lands when its version is newer than the stored one, so a
// slow reader or an out-of-order writer can never put back a stale state.
type Status struct {
	rdb      redis.UniversalClient
	prefix   string
	log      *slog.Logger
	degraded atomic.Bool
}

// NewStatus returns a status cache whose keys start with prefix.
func NewStatus(rdb redis.UniversalClient, prefix string, log *slog.Logger) *Status {
	if log == nil {
		log = slog.Default()
	}
	return &Status{rdb: rdb, prefix: prefix, log: log}
}

func (s *Status) key(workspaceID string) string { return s.prefix + "status:" + workspaceID }

// setIfNewer stores version and data unless the stored version is at least
// as new. KEYS[1] the snapshot; ARGV version, data, ttl in milliseconds.
var setIfNewer = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`)

// Load returns the snapshot of a workspace: from Redis, or else from load
// (the database), which it then stores; and whether Redis holds the
// snapshot returned (or a newer one), which is what a cache in front of
// this one must know before keeping it. When Redis fails it answers from
// load alone and logs the degradation once.
func (s *Status) Load(ctx context.Context, workspaceID string, load func(context.Context) (version int64, data []byte, err error)) ([]byte, bool, error) {
	data, err := s.rdb.HGet(ctx, s.key(workspaceID), "d").Bytes()
	switch {
	case err == nil:
		s.markHealthy()
		return data, true, nil
	case !errors.Is(err, redis.Nil):
		s.markDegraded(err)
		_, data, err := load(ctx)
		return data, false, err
	}
	version, data, err := load(ctx)
	if err != nil {
		return nil, false, err
	}
	return data, s.Store(ctx, workspaceID, version, data), nil
}

// Store writes a snapshot through, unless Redis holds a newer one, and
// reports whether Redis answered. A failure is logged once; the
// snapshot's TTL bounds any staleness.
func (s *Status) Store(ctx context.Context, workspaceID string, version int64, data []byte) bool {
	err := setIfNewer.Run(ctx, s.rdb, []string{s.key(workspaceID)},
		strconv.FormatInt(version, 10), data, StatusTTL.Milliseconds()).Err()
	if err != nil {
		s.markDegraded(err)
		// A stale snapshot must not outlive a change it missed.
		_ = s.rdb.Del(ctx, s.key(workspaceID)).Err()
		return false
	}
	s.markHealthy()
	return true
}

func (s *Status) markDegraded(err error) {
	if s.degraded.CompareAndSwap(false, true) {
		s.log.Warn("status cache: Redis unavailable; reading billing status from the database until it returns", "err", err)
	}
}

func (s *Status) markHealthy() {
	if s.degraded.CompareAndSwap(true, false) {
		s.log.Info("status cache: Redis is back")
	}
}
