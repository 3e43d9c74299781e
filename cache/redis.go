// Package cache is the Redis side of the service: the connection (real or
// embedded), and in later issues the price cache, the subscription-status
// cache and the event bus between replicas.
package cache

import (
	"context"
	"fmt"
	"strings"

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
		client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
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
	client := redis.NewClient(opts)
	return client, client.Close, nil
}

// Ping reports whether Redis answers.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	return c.Ping(ctx).Err()
}
