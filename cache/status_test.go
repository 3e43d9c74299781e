package cache_test

import (
	"context"
	"errors"
	"testing"

	"billingapi/cache"
	"billingapi/internal/testenv"

	"github.com/alicebob/miniredis/v2"
)

func TestStatusCache(t *testing.T) {
	ctx := context.Background()
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			rdb, prefix := open(t)
			st := cache.NewStatus(rdb, prefix, nil)
			loads := 0
			db := func(version int64, data string) func(context.Context) (int64, []byte, error) {
				return func(context.Context) (int64, []byte, error) { loads++; return version, []byte(data), nil }
			}

			t.Run("MissLoadsFromTheDatabaseThenHits", func(t *testing.T) {
				got, _, err := st.Load(ctx, "ws1", db(1, "v1"))
				if err != nil || string(got) != "v1" || loads != 1 {
					t.Fatalf("miss: %q, %v, loads %d", got, err, loads)
				}
				got, _, _ = st.Load(ctx, "ws1", db(1, "v1"))
				if string(got) != "v1" || loads != 1 {
					t.Fatalf("hit: %q, loads %d", got, loads)
				}
			})
			t.Run("WriteThroughIsVisibleAtOnce", func(t *testing.T) {
				st.Store(ctx, "ws1", 2, []byte("v2"))
				got, _, _ := st.Load(ctx, "ws1", db(99, "from db"))
				if string(got) != "v2" {
					t.Fatalf("after write-through: %q", got)
				}
			})
			t.Run("StaleSnapshotNeverOverwritesANewerOne", func(t *testing.T) {
				// A reader that loaded version 1 before the change commits
				// late; an out-of-order writer sends version 2 after 3.
				st.Store(ctx, "ws1", 3, []byte("v3"))
				st.Store(ctx, "ws1", 1, []byte("v1 stale"))
				st.Store(ctx, "ws1", 2, []byte("v2 late"))
				got, _, _ := st.Load(ctx, "ws1", db(99, "from db"))
				if string(got) != "v3" {
					t.Fatalf("stale write won: %q", got)
				}
			})
			t.Run("LoadErrorIsReturned", func(t *testing.T) {
				boom := errors.New("db down")
				_, _, err := st.Load(ctx, "ws-missing", func(context.Context) (int64, []byte, error) { return 0, nil, boom })
				if !errors.Is(err, boom) {
					t.Fatalf("err = %v", err)
				}
			})
		})
	}
}

func TestStatusCacheAnswersWithoutRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb, closeFn, err := cache.Open("redis://" + mr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	st := cache.NewStatus(rdb, "p:", nil)
	st.Store(context.Background(), "ws", 1, []byte("cached"))
	mr.Close()
	got, _, err := st.Load(context.Background(), "ws", func(context.Context) (int64, []byte, error) { return 2, []byte("from db"), nil })
	if err != nil || string(got) != "from db" {
		t.Fatalf("without Redis: %q, %v", got, err)
	}
}
