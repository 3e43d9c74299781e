// Package cache holds the caches: the Redis connection (real or embedded)
// they share, the price cache, the per-workspace billing status snapshot,
// and the in-process near cache in front of both. The event bus
// (eventbus) and the rate limiter (ratelimit) use the same Redis but are
// not caches, and live apart.
package cache

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Open connects to the Redis deployment at url (see Kind: one server over
// redis:// or rediss:// (TLS), Sentinel, or Cluster). An empty url starts
// an embedded in-process Redis on loopback, so that one code path
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
	client, err := openURL(url)
	if err != nil {
		return nil, nil, err
	}
	return client, client.Close, nil
}

// Kind says which Redis deployment a REDIS_URL names.
type Kind string

// The Redis deployments REDIS_URL can name.
const (
	// Single: redis://[:password@]host:port[/db], or rediss:// for TLS.
	Single Kind = "single"
	// Sentinel: a master_name parameter, sentinels as host and addr=:
	// redis://:password@sentinel1:26379?addr=sentinel2:26379&master_name=mymaster
	Sentinel Kind = "sentinel"
	// Cluster: several nodes, as host and addr=, without master_name:
	// redis://:password@node1:6379?addr=node2:6379&addr=node3:6379
	Cluster Kind = "cluster"
)

// KindOf returns the deployment a REDIS_URL names, or an error for a URL
// that is not redis:// or rediss://.
func KindOf(rawURL string) (Kind, error) {
	if !strings.HasPrefix(rawURL, "redis://") && !strings.HasPrefix(rawURL, "rediss://") {
		return "", fmt.Errorf("REDIS_URL must start with redis:// or rediss://")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("REDIS_URL is not a valid URL")
	}
	q := u.Query()
	switch {
	case q.Get("master_name") != "":
		return Sentinel, nil
	case len(q["addr"]) > 0:
		return Cluster, nil
	}
	return Single, nil
}

// openURL connects to the deployment rawURL names. go-redis echoes the URL
// (and its password) in some parse errors, so they are replaced.
func openURL(rawURL string) (redis.UniversalClient, error) {
	kind, err := KindOf(rawURL)
	if err != nil {
		return nil, err
	}
	switch kind {
	case Sentinel:
		opts, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL is not a valid Sentinel URL")
		}
		quietly()
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = time.Second, time.Second, time.Second
		opts.PoolTimeout, opts.MaxRetries = 2*time.Second, 1
		return redis.NewFailoverClient(opts), nil
	case Cluster:
		opts, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL is not a valid Cluster URL")
		}
		quietly()
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = time.Second, time.Second, time.Second
		opts.PoolTimeout, opts.MaxRetries = 2*time.Second, 1
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL is not a valid Redis URL")
	}
	return redis.NewClient(tune(opts)), nil
}

// tune sets timeouts short enough that a Redis outage costs a request
// milliseconds, not seconds: every Redis use has a fallback (Stripe, the
// database), so waiting longer buys nothing.
func tune(o *redis.Options) *redis.Options {
	quietly()
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

// quietly silences go-redis's own logger, once.
func quietly() { quiet.Do(func() { redis.SetLogger(silentLogger{}) }) }

// silentLogger drops go-redis's own log lines ("failed to dial after 5
// attempts" on every command during an outage); our caches log an outage
// once, and its end once.
type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// Ping reports whether Redis answers.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	return c.Ping(ctx).Err()
}
