package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"billingapi/internal/testenv"
	"billingapi/ratelimit"
)

// An action given back no longer counts against its key's budget; giving
// back never takes a key below zero, nor touches another key.
func TestRateLimiterGivesBackAnAction(t *testing.T) {
	for name, open := range testenv.Redises(t) {
		t.Run(name, func(t *testing.T) {
			rdb, prefix := open(t)
			l := ratelimit.New(rdb, prefix+t.Name()+":", 2)
			ctx := context.Background()
			if time.Now().Second() > 55 {
				time.Sleep(6 * time.Second) // stay inside one minute window
			}
			spent := func(key string) int {
				t.Helper()
				n, err := l.Spent(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			first, ok, _, err := l.Take(ctx, "w")
			if err != nil || !ok {
				t.Fatalf("first take: %v %v", ok, err)
			}
			if _, ok, _, _ := l.Take(ctx, "other"); !ok {
				t.Fatal("another key's take refused")
			}
			if err := l.GiveBack(ctx, first); err != nil {
				t.Fatal(err)
			}
			if n := spent("w"); n != 0 {
				t.Fatalf("spent after giving back = %d", n)
			}
			if err := l.GiveBack(ctx, first); err != nil || spent("w") != 0 {
				t.Fatalf("a second give-back: %v, spent %d", err, spent("w"))
			}
			if n := spent("other"); n != 1 {
				t.Fatalf("the other key = %d", n)
			}
			for i := range 2 {
				if _, ok, _, _ := l.Take(ctx, "w"); !ok {
					t.Fatalf("take %d within the budget refused", i)
				}
			}
			_, ok, retry, err := l.Take(ctx, "w")
			if err != nil || ok || retry <= 0 || retry > time.Minute {
				t.Fatalf("take past the budget: allowed %v, retry %v, %v", ok, retry, err)
			}
			if err := l.GiveBack(ctx, ratelimit.Counted{}); err != nil {
				t.Fatalf("giving back nothing: %v", err)
			}
		})
	}
}
