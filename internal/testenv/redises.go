package testenv

import (
	"testing"

	"billingapi/cache"

	"github.com/redis/go-redis/v9"
)

// Redises are the Redis deployments our Redis code must work with, each
// opened the way the server opens it (cache.Open) and closed when the test
// ends: the real server (production), a one-node cluster, which refuses a
// command or transaction whose keys lie in different slots (CROSSSLOT) as
// a real cluster does and a single server does not, and the embedded one
// (`make run`). Each returns a client and a key prefix of its own.
func Redises(t *testing.T) map[string]func(t *testing.T) (redis.UniversalClient, string) {
	open := func(t *testing.T, url string) redis.UniversalClient {
		t.Helper()
		c, closeFn, err := cache.Open(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = closeFn() })
		return c
	}
	return map[string]func(t *testing.T) (redis.UniversalClient, string){
		"Redis": func(t *testing.T) (redis.UniversalClient, string) {
			url, prefix := Redis(t)
			return open(t, url), prefix
		},
		"Cluster": func(t *testing.T) (redis.UniversalClient, string) {
			return open(t, StartRedisCluster(t).URL()), "cluster:"
		},
		"Embedded": func(t *testing.T) (redis.UniversalClient, string) {
			return open(t, ""), "embedded:"
		},
	}
}
