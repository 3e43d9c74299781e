package billing_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/cache"
	"billingapi/internal/database"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// benchFixture is newFixture for benchmarks: a Service on PostgreSQL and
// the real Redis, Stripe a recording fake in front of stripe-mock with a
// three-plan catalog, and one workspace owned by "alice".
func benchFixture(b *testing.B) (*fixture, uuid.UUID) {
	b.Helper()
	ctx := context.Background()
	store, err := database.Open(ctx, testenv.Postgres(b), database.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	redisURL, prefix := testenv.Redis(b)
	rdb, closeRedis, err := cache.Open(redisURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = closeRedis() })
	fake := stripefake.New(b, testenv.StripeMock(b))
	fake.SetPrices(
		stripefake.Price{LookupKey: "starter_monthly", UnitAmount: 900, Interval: "month", Active: true, ProductID: "prod_starter",
			ProductName: "Starter", ProductMetadata: map[string]string{"plan": "starter", "feature_set": "projects"}},
		stripefake.Price{LookupKey: "pro_monthly", UnitAmount: 2900, Interval: "month", Active: true, ProductID: "prod_pro",
			ProductName: "Pro", ProductMetadata: map[string]string{"plan": "pro", "feature_set": "projects,sso"}},
		stripefake.Price{LookupKey: "pro_yearly", UnitAmount: 29000, Interval: "year", Active: true, ProductID: "prod_pro",
			ProductName: "Pro", ProductMetadata: map[string]string{"plan": "pro", "feature_set": "projects,sso"}},
	)
	log := slog.New(slog.DiscardHandler)
	svc := billing.New(billing.Deps{
		DB:     store.Client,
		Stripe: billing.NewStripe(billing.StripeOptions{SecretKey: testenv.StripeMockKey, APIBase: fake.URL}, log),
		Prices: cache.NewPrices(rdb, prefix, time.Hour, log),
		Status: cache.NewStatus(rdb, prefix, log),
		Log:    log,
	}, billing.Config{PlanLookupKeys: []string{"starter_monthly", "pro_monthly", "pro_yearly"}, Dialect: store.Dialect})
	f := &fixture{svc: svc, stripe: fake, store: store, ctx: ctx}
	ws, err := svc.CreateWorkspace(f.as("alice"), "Bench")
	if err != nil {
		b.Fatal(err)
	}
	return f, ws.ID
}

// BenchmarkPlansWarm is plans from a warm price cache: the cache hit and
// the decoding of three plans.
func BenchmarkPlansWarm(b *testing.B) {
	f, _ := benchFixture(b)
	if plans, err := f.svc.Plans(f.ctx); err != nil || len(plans) != 3 {
		b.Fatalf("%d plans, %v", len(plans), err)
	}
	before := len(f.stripe.Requests())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.Plans(f.ctx); err != nil {
			b.Fatal(err)
		}
	}
	if n := len(f.stripe.Requests()) - before; n != 0 {
		b.Fatalf("%d Stripe calls on a warm cache", n)
	}
}

// BenchmarkStatusOfWarm is a workspace's billing status from its warm
// snapshot: the cache hit and its decoding.
func BenchmarkStatusOfWarm(b *testing.B) {
	f, wsID := benchFixture(b)
	f.applyBench(b, "evt_status_sub", "customer.subscription.created", subJSON("sub_status", "active", wsID, false), time.Now().Add(-time.Hour))
	ctx := f.as("alice")
	ws, err := f.svc.Workspace(ctx, wsID)
	if err != nil {
		b.Fatal(err)
	}
	if st, err := f.svc.StatusOf(ctx, ws); err != nil || st.Access.Level != billing.AccessFull {
		b.Fatalf("status %+v, %v", st, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.StatusOf(ctx, ws); err != nil {
			b.Fatal(err)
		}
	}
}

// applyBench stores an event as the webhook endpoint would and applies it.
func (f *fixture) applyBench(b *testing.B, eventID, eventType, object string, created time.Time) {
	b.Helper()
	row, payload := f.storeBench(b, eventID, eventType, object, created)
	if out, err := f.svc.ApplyEvent(f.ctx, row, decodeEvent(b, payload)); err != nil || out.Duplicate {
		b.Fatalf("apply %s: %+v, %v", eventType, out, err)
	}
}

// storeBench stores an event as the webhook endpoint would, and returns
// its row's id and payload.
func (f *fixture) storeBench(b *testing.B, eventID, eventType, object string, created time.Time) (uuid.UUID, []byte) {
	payload := stripefake.Event(eventID, eventType, object, created)
	row, err := f.store.Client.WebhookEvent.Create().SetStripeEventID(eventID).SetType(eventType).
		SetAPIVersion(stripe.APIVersion).SetCreated(created).SetLivemode(false).SetPayload(payload).
		SetNextAttemptAt(time.Now()).Save(auth.NewContext(f.ctx, auth.ServiceViewer(auth.WebhooksService)))
	if err != nil {
		b.Fatalf("store event: %v", err)
	}
	return row.ID, payload
}

// BenchmarkApplyEvent is billing.DecodeEvent and billing.ApplyEvent on
// PostgreSQL for the event types of `make bench`'s mix: the worker's cost
// per event, its one decoding of the payload included, without the store
// (done with the timer stopped) and without the worker's lease.
func BenchmarkApplyEvent(b *testing.B) {
	f, wsID := benchFixture(b)
	base := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	f.applyBench(b, "evt_apply_sub", "customer.subscription.created", subJSON("sub_apply", "active", wsID, false), base)
	meta := map[string]string{"workspace_id": wsID.String(), "user_id": "alice", "purpose": "credits_pack"}
	seq := 0
	cases := []struct {
		name   string
		object func(n int) (string, string)
	}{
		{"PaymentSucceeded", func(n int) (string, string) {
			return "payment_intent.succeeded", stripefake.PaymentIntentJSON(fmt.Sprintf("pi_apply_%d", n), "succeeded", 1999, "usd", meta)
		}},
		{"InvoicePaid", func(n int) (string, string) {
			return "invoice.paid", stripefake.InvoiceJSON(fmt.Sprintf("in_apply_%d", n), "", "sub_apply", "paid", 2900, 2900,
				map[string]string{"workspace_id": wsID.String()})
		}},
		{"SubscriptionUpdated", func(n int) (string, string) {
			status := "active"
			if n%2 == 0 {
				status = "past_due"
			}
			return "customer.subscription.updated", subJSON("sub_apply", status, wsID, false)
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				seq++
				typ, obj := tc.object(seq)
				row, payload := f.storeBench(b, fmt.Sprintf("evt_apply_%d", seq), typ, obj, base.Add(time.Duration(seq)*time.Second))
				b.StartTimer()
				ev, err := billing.DecodeEvent(payload)
				if err != nil {
					b.Fatal(err)
				}
				out, err := f.svc.ApplyEvent(f.ctx, row, ev)
				if err != nil || out.Duplicate || out.Status != "processed" {
					b.Fatalf("apply %s: %+v, %v", typ, out, err)
				}
			}
		})
	}
}
