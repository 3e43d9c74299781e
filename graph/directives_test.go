package graph

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"billingapi/billing"
	"billingapi/cache"
	"billingapi/internal/testenv"
	"billingapi/ratelimit"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// A workspace's budget that Redis cannot count refuses the call, with the
// RATE_LIMITED shape every spent budget has.
func TestWorkspaceBudgetFailsClosedWithoutRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	mr.Close()
	b := &callBudget{limiter: ratelimit.New(rdb, "t:", 60), log: slog.New(slog.DiscardHandler)}
	err := b.SpendWorkspace(context.Background(), uuid.New())
	var be *billing.Error
	if billing.ErrorCode(err) != billing.CodeRateLimited || !errors.As(err, &be) || be.RetryAfter != 5*time.Second {
		t.Fatalf("spend without Redis = %v", err)
	}
}

// What a call spent of a workspace's budget is given back, and only that.
func TestWorkspaceBudgetGivesBackWhatTheCallSpent(t *testing.T) {
	url, prefix := testenv.Redis(t)
	rdb, closeRedis, err := cache.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeRedis() })
	if time.Now().Second() > 55 {
		time.Sleep(6 * time.Second) // stay inside one minute window
	}
	limiter := ratelimit.New(rdb, prefix, 60)
	ctx := context.Background()
	ws, other := uuid.New(), uuid.New()
	if _, _, err := limiter.Allow(ctx, WorkspaceBudget(ws)); err != nil { // another call's spend
		t.Fatal(err)
	}
	b := &callBudget{limiter: limiter, log: slog.New(slog.DiscardHandler)}
	for _, id := range []uuid.UUID{ws, other} {
		if err := b.SpendWorkspace(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	b.giveBack(ctx)
	b.giveBack(ctx) // nothing left to give
	for id, want := range map[uuid.UUID]int{ws: 1, other: 0} {
		if n, err := limiter.Spent(ctx, WorkspaceBudget(id)); err != nil || n != want {
			t.Fatalf("spent = %d, %v; want %d", n, err, want)
		}
	}
}
