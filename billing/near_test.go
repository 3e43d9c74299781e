package billing_test

import (
	"context"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/cache"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// TestNearCacheAcrossReplicas: two replicas on one database and one Redis,
// each with its own in-process cache whose TTL (a minute) is far longer
// than the test, so that only an invalidation can explain a fresh answer.
// A change made through one replica is seen by the other at once.
func TestNearCacheAcrossReplicas(t *testing.T) {
	dbURL := testenv.Postgres(t)
	redisURL, prefix := testenv.Redis(t)
	var nears []*cache.Near // a's, then b's
	newNear := func(rdb redis.UniversalClient) *cache.Near {
		n := cache.NewNear(rdb, prefix, time.Minute, nil)
		nears = append(nears, n)
		n.Start(context.Background())
		t.Cleanup(n.Close)
		deadline := time.Now().Add(5 * time.Second)
		for !n.Enabled() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		return n
	}
	cfg := billing.Config{PlanLookupKeys: []string{"team_monthly"}}
	a := newReplica(t, dbURL, redisURL, prefix, cfg, newNear, nil)
	b := newReplica(t, dbURL, redisURL, prefix, cfg, newNear, a.stripe)
	a.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
		ProductMetadata: map[string]string{"plan": "team", "feature_set": "a,b"}})
	ws := a.workspace(t, "alice")

	status := func(f *fixture) *billing.BillingStatus {
		t.Helper()
		return f.statusOf(t, "alice", ws)
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("replica b did not see %s within 2 s (its entries live a minute)", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	t.Run("WarmReadsComeFromMemory", func(t *testing.T) {
		if st := status(b); st.Access.Level != billing.AccessFree {
			t.Fatalf("before any subscription: %s", st.Access.Level)
		}
		// A fill is refused while an invalidation (here: the workspace's
		// creation, heard from a) may still be on its way, so read until
		// replica b holds both entries.
		group := cache.WorkspaceGroup(ws.String())
		deadline := time.Now().Add(2 * time.Second)
		for {
			_, visible, _ := nears[1].Get(group, "visible:alice")
			_, st, _ := nears[1].Get(group, "status")
			if visible && st {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica b did not keep the workspace (%v) and its status (%v)", visible, st)
			}
			time.Sleep(10 * time.Millisecond)
			status(b)
		}
		// Behind the cache's back (no hook, no invalidation): a raw
		// change of the database and an emptied Redis. Replica b keeps
		// answering from memory, which is what makes the next subtests
		// prove the invalidations.
		if _, err := a.store.SQL.ExecContext(a.ctx, `UPDATE workspaces SET name = 'renamed behind the cache' WHERE id = $1`, ws); err != nil {
			t.Fatal(err)
		}
		rdb, closeFn, _ := cache.Open(redisURL)
		defer closeFn()
		if err := rdb.Del(a.ctx, prefix+"status:"+ws.String()).Err(); err != nil {
			t.Fatal(err)
		}
		row, err := b.svc.VisibleWorkspace(b.as("alice"), ws)
		if err != nil || row.Name == "renamed behind the cache" {
			t.Fatalf("warm read went to the database: %+v, %v", row, err)
		}
		if st := status(b); st.Access.Level != billing.AccessFree {
			t.Fatalf("warm status: %s", st.Access.Level)
		}
	})
	t.Run("StatusChangeOnOneReplicaReachesTheOther", func(t *testing.T) {
		a.deliver(t, "evt_near_1", "customer.subscription.created", subJSON("sub_near", "active", ws, false), time.Now())
		if st := status(a); st.Access.Level != billing.AccessFull {
			t.Fatalf("the writing replica reads %s after its own change", st.Access.Level)
		}
		eventually("the new subscription", func() bool { return status(b).Access.Level == billing.AccessFull })
		a.deliver(t, "evt_near_2", "customer.subscription.updated", subJSON("sub_near", "past_due", ws, false), time.Now().Add(time.Second))
		eventually("past_due", func() bool { return status(b).Access.Level == billing.AccessLimited })
	})
	t.Run("WorkspaceWriteReachesTheOther", func(t *testing.T) {
		cus, err := a.svc.EnsureCustomer(a.as("alice"), ws)
		if err != nil {
			t.Fatal(err)
		}
		eventually("the workspace's Stripe customer", func() bool {
			row, err := b.svc.VisibleWorkspace(b.as("alice"), ws)
			return err == nil && row.StripeCustomerID != nil && *row.StripeCustomerID == cus
		})
	})
	t.Run("OnlyMembersAndNothingCachedForOthers", func(t *testing.T) {
		if _, err := b.svc.VisibleWorkspace(b.as("mallory"), ws); billing.ErrorCode(err) != billing.CodeNotFound {
			t.Fatalf("an outsider: %v, want NOT_FOUND", err)
		}
		if _, err := a.join(a.as("alice"), ws, "bob", auth.RoleMember); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.VisibleWorkspace(b.as("bob"), ws); err != nil {
			t.Fatalf("a new member on the other replica: %v", err)
		}
		if _, err := b.svc.VisibleWorkspace(b.as("mallory"), ws); billing.ErrorCode(err) != billing.CodeNotFound {
			t.Fatalf("an outsider after bob joined: %v, want NOT_FOUND", err)
		}
	})
	t.Run("PriceChangeReachesTheOther", func(t *testing.T) {
		plans, err := b.svc.Plans(b.ctx)
		if err != nil || len(plans) != 1 || plans[0].UnitAmount != 900 {
			t.Fatalf("plans: %+v, %v", plans, err)
		}
		a.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 1200, Interval: "month", Active: true,
			ProductMetadata: map[string]string{"plan": "team", "feature_set": "a,b"}})
		if plans, _ := b.svc.Plans(b.ctx); plans[0].UnitAmount != 900 {
			t.Fatalf("without an event the cached plan should stay: %d", plans[0].UnitAmount)
		}
		a.deliver(t, "", "price.updated", `{"id":"price_team_monthly","object":"price","lookup_key":"team_monthly"}`, time.Now())
		eventually("the new price", func() bool {
			plans, err := b.svc.Plans(b.ctx)
			return err == nil && len(plans) == 1 && plans[0].UnitAmount == 1200
		})
		p, err := b.svc.Price(b.ctx, "team_monthly")
		if err != nil || p.UnitAmount != 1200 {
			t.Fatalf("price(lookupKey) after the change: %+v, %v", p, err)
		}
	})
}

// A subscription event drops its own workspace's entries from the near
// cache, not every workspace's and the plans: in a month-end burst, each
// event emptying the whole cache of every replica would send every read
// to Redis.
func TestSubscriptionEventDropsOnlyItsWorkspaceFromTheNearCache(t *testing.T) {
	redisURL, prefix := testenv.Redis(t)
	var near *cache.Near
	f := newReplica(t, testenv.SQLite(t), redisURL, prefix, billing.Config{PlanLookupKeys: []string{"team_monthly"}},
		func(rdb redis.UniversalClient) *cache.Near {
			near = cache.NewNear(rdb, prefix, time.Minute, nil)
			near.Start(context.Background())
			t.Cleanup(near.Close)
			for deadline := time.Now().Add(5 * time.Second); !near.Enabled() && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			return near
		}, nil)
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
		ProductMetadata: map[string]string{"plan": "team", "feature_set": "a,b"}})
	alice, bob := f.workspace(t, "alice"), f.workspace(t, "bob")
	held := func(ws uuid.UUID) (status, plans bool) {
		_, status, _ = near.Get(cache.WorkspaceGroup(ws.String()), "status")
		_, plans, _ = near.Get(cache.PricesGroup, "plans")
		return status, plans
	}
	// Fills are refused while the workspaces' creations may still be
	// echoing back from Redis: read until both are held.
	for deadline := time.Now().Add(2 * time.Second); ; {
		f.statusOf(t, "alice", alice)
		f.statusOf(t, "bob", bob)
		if _, err := f.svc.Plans(f.as("bob")); err != nil {
			t.Fatal(err)
		}
		aliceHeld, _ := held(alice)
		if bobHeld, plansHeld := held(bob); aliceHeld && bobHeld && plansHeld {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the near cache never held both statuses and the plans")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.deliver(t, "evt_near_a", "customer.subscription.updated", subJSON("sub_near_a", "active", alice, false),
		time.Now().Add(-time.Minute).Truncate(time.Second))
	if aliceHeld, _ := held(alice); aliceHeld {
		t.Error("alice's status is still held after her subscription changed")
	}
	if bobHeld, plansHeld := held(bob); !bobHeld || !plansHeld {
		t.Errorf("after alice's subscription event: bob's status held %v, plans held %v; want both kept", bobHeld, plansHeld)
	}
}
