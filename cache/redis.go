// Package cache is the Redis side of the service: the connection (real or
// embedded), and in later issues the price cache, the subscription-status
// cache and the event bus between replicas.
package cache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Open connects to the Redis at url (redis:// or rediss://). An empty url
// starts an embedded in-process Redis on loopback, so that one code path
// (go-redis) serves both a laptop and production. The returned close
// function closes the client and stops the embedded server, if any.
func Open(url string) (redis.UniversalClient, func() error, error) {
	if url == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return nil, nil, fmt.Errorf("start embedded redis: %w", err)
		}
		client := redis.NewClient(tune(&redis.Options{Addr: mr.Addr()}))
		return client, func() error {
			err := client.Close()
			mr.Close()
			return err
		}, nil
	}
	if !strings.HasPrefix(url, "redis://") && !strings.HasPrefix(url, "rediss://") {
		return nil, nil, fmt.Errorf("REDIS_URL must start with redis:// or rediss://")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		// go-redis echoes the URL (and its password) in some errors.
		return nil, nil, fmt.Errorf("REDIS_URL is not a valid Redis URL")
	}
	client := redis.NewClient(tune(opts))
	return client, client.Close, nil
}

// tune sets timeouts short enough that a Redis outage costs a request
// milliseconds, not seconds: every Redis use has a fallback (Stripe, the
// database), so waiting longer buys nothing.
func tune(o *redis.Options) *redis.Options {
	quiet.Do(func() { redis.SetLogger(silentLogger{}) })
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = time.Second
	}
	o.PoolTimeout = 2 * time.Second
	o.MaxRetries = 1
	return o
}

var quiet sync.Once

// silentLogger drops go-redis's own log lines ("failed to dial after 5
// attempts" on every command during an outage); our caches log an outage
// once, and its end once.
type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// Ping reports whether Redis answers.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	return c.Ping(ctx).Err()
}
