package billing_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"billingapi/billing"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"
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
