package cache

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestKindOf(t *testing.T) {
	cases := []struct {
		url  string
		kind Kind
		err  bool
	}{
		{"redis://127.0.0.1:6379/0", Single, false},
		{"rediss://:secret@cache.example.com:6380/1", Single, false},
		{"redis://:pw@s1:26379?addr=s2:26379&master_name=mymaster", Sentinel, false},
		{"redis://:pw@n1:6379?addr=n2:6379&addr=n3:6379", Cluster, false},
		{"http://127.0.0.1:6379", "", true},
		{"127.0.0.1:6379", "", true},
	}
	for _, tc := range cases {
		kind, err := KindOf(tc.url)
		if kind != tc.kind || (err != nil) != tc.err {
			t.Errorf("KindOf(%q) = %q, %v; want %q, error %t", tc.url, kind, err, tc.kind, tc.err)
		}
	}
}

func TestOpenURLBuildsTheRightClient(t *testing.T) {
	single, err := openURL("rediss://:secret@cache.example.com:6380/1")
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	opts := single.(*redis.Client).Options()
	if opts.TLSConfig == nil || opts.TLSConfig.MinVersion < tls.VersionTLS12 && opts.TLSConfig.MinVersion != 0 || opts.DB != 1 {
		t.Errorf("rediss:// options = TLS %v, DB %d", opts.TLSConfig, opts.DB)
	}
	cluster, err := openURL("redis://:pw@n1:6379?addr=n2:6379&addr=n3:6379")
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	if c, ok := cluster.(*redis.ClusterClient); !ok || len(c.Options().Addrs) != 3 {
		t.Errorf("cluster client = %T", cluster)
	}
	sentinel, err := openURL("redis://:pw@s1:26379?addr=s2:26379&master_name=mymaster")
	if err != nil {
		t.Fatal(err)
	}
	defer sentinel.Close()
	if _, ok := sentinel.(*redis.Client); !ok {
		t.Errorf("sentinel client = %T", sentinel)
	}
	if _, err := openURL("redis://:SENTINELpw@host:notaport/x"); err == nil || strings.Contains(err.Error(), "SENTINELpw") {
		t.Errorf("bad URL error = %v (must not echo the password)", err)
	}
}
