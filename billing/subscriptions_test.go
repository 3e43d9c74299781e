package billing_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent/privacy"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
)

func TestTwoConcurrentSubscriptionsOnlyOneWins(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
		ProductMetadata: map[string]string{"plan": "team"}})
	ws := f.workspace(t, "alice")
	if _, err := f.svc.EnsureCustomer(f.as("alice"), ws); err != nil {
		t.Fatal(err)
	}
	// Stripe is slow, so both requests are in flight together.
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Delay: 200 * time.Millisecond, Forward: true})
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.svc.CreateSubscription(f.as("alice"), billing.SubscriptionInput{
				WorkspaceID: ws, LookupKey: "team_monthly", Quantity: 1, IdempotencyKey: fmt.Sprintf("k%d", i),
			})
		}()
	}
	wg.Wait()
	won, refused := 0, 0
	for _, err := range errs {
		switch billing.ErrorCode(err) {
		case "":
			won++
		case billing.CodeBadUserInput:
			refused++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if won != 1 || refused != 1 {
		t.Fatalf("won %d, refused %d; want one each", won, refused)
	}
	if n := f.stripe.Count("POST", "/v1/subscriptions"); n != 1 {
		t.Fatalf("Stripe subscriptions created = %d, want 1", n)
	}
}

func TestStatusCacheFallsBackToTheDatabase(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixtureWithEmbeddedRedis(t, backend.URL(t), billing.Config{})
			f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
				ProductMetadata: map[string]string{"plan": "team", "feature_set": "a,b"}})
			ws := f.workspace(t, "alice")
			f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
				ID: "sub_1", Status: "active", PriceID: "price_team_monthly", LookupKey: "team_monthly",
				Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
			})})
			if _, err := f.svc.CreateSubscription(f.as("alice"), billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_monthly", Quantity: 1}); err != nil {
				t.Fatal(err)
			}
			row, err := f.svc.Workspace(f.as("alice"), ws)
			if err != nil {
				t.Fatal(err)
			}
			st, err := f.svc.StatusOf(f.as("alice"), row)
			if err != nil || st.Access.Level != billing.AccessFull || st.Subscription.Status != "active" {
				t.Fatalf("status = %+v, %v", st, err)
			}
			// The entry is gone (evicted, Redis restarted): the database answers.
			f.flushRedis(t)
			st, err = f.svc.StatusOf(f.as("alice"), row)
			if err != nil || st.Access.Level != billing.AccessFull || fmt.Sprint(st.Access.Features) != "[a b]" {
				t.Fatalf("status after a miss = %+v, %v", st, err)
			}
			// Redis stops: the database still answers.
			f.stopRedis(t)
			st, err = f.svc.StatusOf(f.as("alice"), row)
			if err != nil || st.Access.Level != billing.AccessFull {
				t.Fatalf("status without Redis = %+v, %v", st, err)
			}
		})
	}
}

// A change whose status write-through Redis refused (a failover, a
// timeout) must not leave the old snapshot in charge once Redis answers
// again: a canceled workspace would keep its access until the snapshot
// expired. A snapshot older than the workspace's billing version is
// replaced from the database.
func TestStatusSnapshotThatMissedAChangeIsReplaced(t *testing.T) {
	f := newFixtureWithEmbeddedRedis(t, testenv.SQLite(t), billing.Config{})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
		ProductMetadata: map[string]string{"plan": "team", "feature_set": "a,b"}})
	ws := f.workspace(t, "alice")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	f.deliver(t, "evt_stale_1", "customer.subscription.created", subJSON("sub_stale", "active", ws, false), t0)
	if st := f.statusOf(t, "alice", ws); st.Access.Level != billing.AccessFull {
		t.Fatalf("before the cancellation: %s", st.Access.Level)
	}
	f.redis.SetError("READONLY You can't write against a read only replica.")
	f.deliver(t, "evt_stale_2", "customer.subscription.deleted", subJSON("sub_stale", "canceled", ws, false), t0.Add(time.Minute))
	f.redis.SetError("")
	if st := f.statusOf(t, "alice", ws); st.Access.Level != billing.AccessNone || st.Subscription.Status != "canceled" {
		t.Fatalf("after the cancellation: %s, %s; want no access, canceled", st.Access.Level, st.Subscription.Status)
	}
	// And the fresh snapshot is in Redis again (the embedded Redis's
	// prefix is "test:").
	row, err := f.svc.Workspace(f.as("alice"), ws)
	if err != nil {
		t.Fatal(err)
	}
	if v := f.redis.HGet("test:status:"+ws.String(), "v"); v != fmt.Sprint(row.BillingVersion) {
		t.Errorf("snapshot version in Redis %q; want the workspace's %d", v, row.BillingVersion)
	}
}

func TestPerSeatQuantityFollowsMembersDebounced(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{SeatDebounce: 300 * time.Millisecond})
	f.stripe.SetPrices(
		stripefake.Price{LookupKey: "team_seat", UnitAmount: 800, Interval: "month", Active: true, ProductID: "prod_seat",
			ProductMetadata: map[string]string{"plan": "team", "seats": "per_member"}},
		stripefake.Price{LookupKey: "flat_monthly", UnitAmount: 5000, Interval: "month", Active: true, ProductID: "prod_flat",
			ProductMetadata: map[string]string{"plan": "flat"}})
	subscribe := func(ws uuid.UUID, id, lookupKey string) {
		t.Helper()
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
			ID: id, Status: "active", ItemID: "si_" + id, PriceID: "price_" + lookupKey, LookupKey: lookupKey, Quantity: 1,
			Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
		})})
		if _, err := f.svc.CreateSubscription(f.as("owner-"+id), billing.SubscriptionInput{WorkspaceID: ws, LookupKey: lookupKey, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	seatWS := f.workspace(t, "owner-sub_seat")
	flatWS := f.workspace(t, "owner-sub_flat")
	subscribe(seatWS, "sub_seat", "team_seat")
	subscribe(flatWS, "sub_flat", "flat_monthly")
	// Stripe answers the quantity update with the new quantity.
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/sub_seat", Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_seat", Status: "active", ItemID: "si_sub_seat", PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: 11,
		Metadata: map[string]string{"workspace_id": seatWS.String(), "plan": "team"},
	})})

	// Ten members invited at once.
	for _, ws := range []uuid.UUID{seatWS, flatWS} {
		owner := "owner-sub_seat"
		if ws == flatWS {
			owner = "owner-sub_flat"
		}
		for i := range 10 {
			if _, err := f.join(f.as(owner), ws, fmt.Sprintf("member-%s-%d", ws, i), "member"); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(time.Second)
	if n := f.stripe.Count("POST", "/v1/subscriptions/sub_seat"); n != 1 {
		t.Fatalf("per-seat updates = %d, want 1 for ten members added at once", n)
	}
	req, _ := f.stripe.Last("POST", "/v1/subscriptions/sub_seat")
	if req.Form.Get("items[0][quantity]") != "11" || req.Form.Get("items[0][id]") != "si_sub_seat" ||
		req.Form.Get("proration_behavior") != "create_prorations" || req.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("update params = %v", req.Form)
	}
	if n := f.stripe.Count("POST", "/v1/subscriptions/sub_flat"); n != 0 {
		t.Fatalf("a flat plan's quantity was changed %d times", n)
	}
	row, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_seat")).Only(f.sys(seatWS))
	if err != nil || row.Quantity != 11 {
		t.Fatalf("stored quantity = %v, %v", row, err)
	}

	// Stripe fails the next update: it is tried again, not left until the
	// next member change.
	f.stripe.ClearRules()
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/sub_seat", Times: 1, Status: 500,
		Body: stripefake.StripeError("api_error", "", "", "Stripe had a moment.")})
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/sub_seat", Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_seat", Status: "active", ItemID: "si_sub_seat", PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: 12,
		Metadata: map[string]string{"workspace_id": seatWS.String(), "plan": "team"},
	})})
	before := f.stripe.Count("POST", "/v1/subscriptions/sub_seat")
	if _, err := f.join(f.as("owner-sub_seat"), seatWS, "member-late", "member"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		row, err = f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_seat")).Only(f.sys(seatWS))
		if err == nil && row.Quantity == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a failed update: quantity %v (%v), %d updates sent; want 12 after a retry",
				row, err, f.stripe.Count("POST", "/v1/subscriptions/sub_seat")-before)
		}
	}
	if n := f.stripe.Count("POST", "/v1/subscriptions/sub_seat") - before; n != 2 {
		t.Errorf("%d updates sent, want 2: the failed one and its retry", n)
	}
	var keys []string
	for _, req := range f.stripe.Requests() {
		if req.Method == "POST" && req.Path == "/v1/subscriptions/sub_seat" {
			keys = append(keys, req.Header.Get("Idempotency-Key"))
		}
	}
	if n := len(keys); n < 2 || keys[n-1] == keys[n-2] {
		t.Errorf("the retry reused the failed attempt's idempotency key (%v): Stripe would answer it with the same 500", keys)
	}
}

// A member change while a failed quantity update waits for its retry
// starts over with a full count of attempts: inheriting the pending
// retry's count, it could get one try and be dropped, and the member would
// go unbilled.
func TestMemberChangeDuringSeatRetriesGetsItsOwnAttempts(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{SeatDebounce: time.Millisecond})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_seat", UnitAmount: 800, Interval: "month", Active: true, ProductID: "prod_seat",
		ProductMetadata: map[string]string{"plan": "team", "seats": "per_member"}})
	ws := f.workspace(t, "owner")
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_retry", Status: "active", ItemID: "si_retry", PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: 1,
		Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
	})})
	if _, err := f.svc.CreateSubscription(f.as("owner"), billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_seat", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	const path = "/v1/subscriptions/sub_retry"
	// Seven failures: the first member change's attempts 0 to 6; its last
	// attempt then waits 16 s.
	f.stripe.On(stripefake.Rule{Method: "POST", Path: path, Times: 8, Status: 500, Body: stripefake.StripeError("api_error", "", "", "down")})
	f.stripe.On(stripefake.Rule{Method: "POST", Path: path, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_retry", Status: "active", ItemID: "si_retry", PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: 3,
		Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
	})})
	if _, err := f.join(f.as("owner"), ws, "member-1", "member"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); f.stripe.Count("POST", path) < 7; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts after 15 s, want 7", f.stripe.Count("POST", path))
		}
	}
	// The next member change: its first try fails too (the eighth 500),
	// its retry lands.
	if _, err := f.join(f.as("owner"), ws, "member-2", "member"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		row, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_retry")).Only(f.sys(ws))
		if err == nil && row.Quantity == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quantity %v (%v) 5 s after the second member change, %d attempts; want 3 after its own retry",
				row, err, f.stripe.Count("POST", path))
		}
	}
}

// A member added while no quantity update could follow (the process that
// held the debounce timer stopped, or every attempt failed) is billed by
// the next seat sweep: only per-seat subscriptions that are live, whose
// plan is still in the catalog, whose quantity differs from the member
// count, and that this process has no update pending for are updated, once.
func TestSeatSweepBillsMembersWhoseUpdateWasLost(t *testing.T) {
	f := newFixtureWithEmbeddedRedis(t, testenv.Postgres(t), billing.Config{SeatDebounce: time.Hour})
	seat := stripefake.Price{LookupKey: "team_seat", UnitAmount: 800, Interval: "month", Active: true, ProductID: "prod_seat",
		ProductMetadata: map[string]string{"plan": "team", "seats": "per_member"}}
	flat := stripefake.Price{LookupKey: "flat_monthly", UnitAmount: 5000, Interval: "month", Active: true, ProductID: "prod_flat",
		ProductMetadata: map[string]string{"plan": "flat"}}
	retired := stripefake.Price{LookupKey: "old_seat", UnitAmount: 700, Interval: "month", Active: true, ProductID: "prod_old",
		ProductMetadata: map[string]string{"plan": "team", "seats": "per_member"}}
	f.stripe.SetPrices(seat, flat, retired)
	subscribe := func(owner, id, lookupKey string) uuid.UUID {
		t.Helper()
		ws := f.workspace(t, owner)
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
			ID: id, Status: "active", ItemID: "si_" + id, PriceID: "price_" + lookupKey, LookupKey: lookupKey, Quantity: 1,
			Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
		})})
		if _, err := f.svc.CreateSubscription(f.as(owner), billing.SubscriptionInput{WorkspaceID: ws, LookupKey: lookupKey, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		return ws
	}
	memberBehindItsBack := func(ws uuid.UUID, user string) { t.Helper(); f.memberWithoutSeatSync(t, ws, user) }
	lost := subscribe("owner-lost", "sub_lost", "team_seat")
	memberBehindItsBack(lost, "member-lost")
	flatWS := subscribe("owner-flat", "sub_flatp", "flat_monthly")
	memberBehindItsBack(flatWS, "member-flat")
	subscribe("owner-even", "sub_even", "team_seat") // one member, quantity 1
	canceled := subscribe("owner-canceled", "sub_canceled", "team_seat")
	memberBehindItsBack(canceled, "member-canceled")
	if err := f.store.Client.Subscription.Update().Where(subscriptionStripeID("sub_canceled")).SetStatus("canceled").Exec(f.sys(canceled)); err != nil {
		t.Fatal(err)
	}
	old := subscribe("owner-old", "sub_old", "old_seat")
	memberBehindItsBack(old, "member-old")
	pending := subscribe("owner-pending", "sub_pending", "team_seat")
	if _, err := f.join(f.as("owner-pending"), pending, "member-pending", "member"); err != nil {
		t.Fatal(err) // its update waits out the hour's debounce
	}
	// old_seat leaves the catalog, and the price cache forgets it: its
	// subscription's plan cannot be told per seat or not, and is passed
	// over, while the others are swept.
	f.stripe.SetPrices(seat, flat)
	f.flushRedis(t)
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/sub_lost", Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_lost", Status: "active", ItemID: "si_sub_lost", PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: 2,
		Metadata: map[string]string{"workspace_id": lost.String(), "plan": "team"},
	})})

	n, err := f.svc.SweepSeats(f.ctx)
	updates := map[string]int{}
	for _, req := range f.stripe.Requests() {
		if req.Method == "POST" && strings.HasPrefix(req.Path, "/v1/subscriptions/") {
			updates[strings.TrimPrefix(req.Path, "/v1/subscriptions/")]++
		}
	}
	if fmt.Sprint(updates) != "map[sub_lost:1]" || err != nil || n != 1 {
		t.Fatalf("sweep sent %d updates (%v): %v; want sub_lost's alone", n, err, updates)
	}
	req, _ := f.stripe.Last("POST", "/v1/subscriptions/sub_lost")
	if req.Form.Get("items[0][quantity]") != "2" || req.Form.Get("items[0][id]") != "si_sub_lost" ||
		req.Form.Get("proration_behavior") != "create_prorations" || req.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("update params = %v", req.Form)
	}
	row, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_lost")).Only(f.sys(lost))
	if err != nil || row.Quantity != 2 {
		t.Fatalf("stored quantity = %v, %v; want 2", row, err)
	}
	// In step now: the next sweep sends nothing.
	if n, err := f.svc.SweepSeats(f.ctx); err != nil || n != 0 {
		t.Fatalf("second sweep updated %d (%v), want 0", n, err)
	}
	if got := f.stripe.Count("POST", "/v1/subscriptions/sub_lost"); got != 1 {
		t.Fatalf("sub_lost updated %d times, want 1", got)
	}
}

// A sweep that Stripe refuses for one workspace goes on with the others,
// and RunSeatSweep, on its interval, brings the refused one in step once
// Stripe answers again.
func TestSeatSweepGoesOnPastAFailureAndRunsOnItsInterval(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_seat", UnitAmount: 800, Interval: "month", Active: true, ProductID: "prod_seat",
		ProductMetadata: map[string]string{"plan": "team", "seats": "per_member"}})
	var wss []uuid.UUID
	for _, id := range []string{"sub_a", "sub_b"} {
		ws := f.workspace(t, "owner-"+id)
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
			ID: id, Status: "active", ItemID: "si_" + id, PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: 1,
			Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
		})})
		if _, err := f.svc.CreateSubscription(f.as("owner-"+id), billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_seat", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		f.memberWithoutSeatSync(t, ws, "member-"+id)
		if id == "sub_a" {
			f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/" + id, Status: 500, Times: 1,
				Body: stripefake.StripeError("api_error", "", "", "down")})
		}
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/" + id, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
			ID: id, Status: "active", ItemID: "si_" + id, PriceID: "price_team_seat", LookupKey: "team_seat", Quantity: 2,
			Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
		})})
		wss = append(wss, ws)
	}
	// sub_a's first update fails; sub_b's is tried all the same.
	n, err := f.svc.SweepSeats(f.ctx)
	if err != nil || n != 2 {
		t.Fatalf("sweep sent %d updates (%v), want 2: sub_a's failed one and sub_b's", n, err)
	}
	quantity := func(ws uuid.UUID, id string) int64 {
		row, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID(id)).Only(f.sys(ws))
		if err != nil {
			t.Fatal(err)
		}
		return row.Quantity
	}
	if a, b := quantity(wss[0], "sub_a"), quantity(wss[1], "sub_b"); a != 1 || b != 2 {
		t.Fatalf("quantities after the first sweep: sub_a %d, sub_b %d; want 1 (refused) and 2", a, b)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	go f.svc.RunSeatSweep(ctx, 50*time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); quantity(wss[0], "sub_a") != 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sub_a still at quantity %d after 10 s of sweeps", quantity(wss[0], "sub_a"))
		}
	}
	// The retry had a key of its own: Stripe answers a key it saw fail
	// with a 500 with the same 500.
	var keys []string
	for _, req := range f.stripe.Requests() {
		if req.Method == "POST" && req.Path == "/v1/subscriptions/sub_a" {
			keys = append(keys, req.Header.Get("Idempotency-Key"))
		}
	}
	if len(keys) < 2 || keys[0] == "" || keys[0] == keys[1] {
		t.Errorf("sub_a's idempotency keys %q: the sweep after the failure must not reuse the failed one", keys)
	}
}

// memberWithoutSeatSync stores a member of ws with no quantity update
// scheduled, as a process that stopped before its debounce fired leaves it.
func (f *fixture) memberWithoutSeatSync(t *testing.T, ws uuid.UUID, user string) {
	t.Helper()
	all := privacy.DecisionContext(f.ctx, privacy.Allow)
	if err := f.store.Client.User.Create().SetID(user).Exec(all); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Client.Membership.Create().SetWorkspaceID(ws).SetUserID(user).SetRole(auth.RoleMember).Exec(all); err != nil {
		t.Fatal(err)
	}
}
