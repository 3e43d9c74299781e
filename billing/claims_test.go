package billing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/checkoutsession"
	"billingapi/ent/payment"
	"billingapi/ent/refund"
	"billingapi/ent/subscription"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
)

// paymentRows returns the workspace's payments as "stripe id status".
func (f *fixture) paymentRows(t *testing.T, ws uuid.UUID) []string {
	t.Helper()
	rows, err := f.store.Client.Payment.Query().Where(payment.WorkspaceID(ws)).All(f.sys(ws))
	return describeRows(t, rows, err, func(r *ent.Payment) (*string, string) { return r.StripePaymentIntentID, string(r.Status) })
}

// describeRows renders rows as "stripe id status", "<none>" for a row not
// yet linked to Stripe.
func describeRows[T any](t *testing.T, rows []T, err error, fields func(T) (*string, string)) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		id, status := fields(r)
		if id == nil {
			id = ptr("<none>")
		}
		out = append(out, *id+" "+status)
	}
	return out
}

// A saved card can make Stripe confirm a payment, and its webhook be
// applied, before Stripe's answer to our create call is read. The webhook
// found no row with the PaymentIntent's id (the claim has none yet) and
// recorded one of its own; the request must still succeed, leave one row
// with the webhook's state, and a retry with the same key must find it.
func TestPaymentWhoseWebhookCameFirst(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixture(t, backend.URL(t), billing.Config{})
			ws := f.workspace(t, "alice")
			meta := map[string]string{"workspace_id": ws.String(), "user_id": "alice", "purpose": "credits_pack"}
			f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents",
				Body: stripefake.PaymentIntentJSON("pi_first", "processing", 1500, "usd", meta)})
			applied := false
			f.hook.after("POST", "/v1/payment_intents", func() {
				f.deliver(t, "evt_first", "payment_intent.succeeded",
					stripefake.PaymentIntentJSON("pi_first", "succeeded", 1500, "usd", meta), time.Now())
				applied = true
			})
			in := billing.PaymentInput{WorkspaceID: ws, Amount: 1500, Currency: "usd", Purpose: "credits_pack",
				IdempotencyKey: "k1", PaymentMethodID: "pm_card_visa"}
			res, err := f.svc.CreatePaymentIntent(f.as("alice"), in)
			if !applied {
				t.Fatal("the webhook was not applied before the answer was read")
			}
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if res.Payment.StripePaymentIntentID == nil || *res.Payment.StripePaymentIntentID != "pi_first" ||
				res.Payment.Status != payment.StatusSucceeded {
				t.Fatalf("payment = %+v; want pi_first, succeeded (the webhook's state)", res.Payment)
			}
			if rows := f.paymentRows(t, ws); len(rows) != 1 || rows[0] != "pi_first succeeded" {
				t.Fatalf("payments = %q; want one", rows)
			}
			var again *billing.PaymentResult
			if n := f.creates("/v1/payment_intents", func() { again, err = f.svc.CreatePaymentIntent(f.as("alice"), in) }); n != 0 {
				t.Fatalf("the retry created at Stripe again (%d creates)", n)
			}
			if err != nil || again.Payment.ID != res.Payment.ID {
				t.Fatalf("retry with the same key = %+v, %v; want payment %s", again, err, res.Payment.ID)
			}
		})
	}
}

// creates returns how many create calls (POSTs to path) call made to
// Stripe.
func (f *fixture) creates(path string, call func()) int {
	before := f.stripe.Count("POST", path)
	call()
	return f.stripe.Count("POST", path) - before
}

// The webhook's row can be behind Stripe's answer (payment_intent.created
// or .processing applied, the answer already succeeded): the claim takes
// whichever is further along, never a paid payment back to unpaid.
func TestPaymentKeepsStripesAnswerWhenTheWebhookIsBehind(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{})
	ws := f.workspace(t, "alice")
	meta := map[string]string{"workspace_id": ws.String(), "user_id": "alice", "purpose": "credits_pack"}
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents",
		Body: stripefake.PaymentIntentJSON("pi_behind", "succeeded", 700, "usd", meta)})
	f.hook.after("POST", "/v1/payment_intents", func() {
		f.deliver(t, "evt_behind", "payment_intent.processing",
			stripefake.PaymentIntentJSON("pi_behind", "processing", 700, "usd", meta), time.Now())
	})
	res, err := f.svc.CreatePaymentIntent(f.as("alice"), billing.PaymentInput{WorkspaceID: ws, Amount: 700, Currency: "usd",
		Purpose: "credits_pack", IdempotencyKey: "k1", PaymentMethodID: "pm_card_visa"})
	if err != nil || res.Payment.Status != payment.StatusSucceeded {
		t.Fatalf("payment = %+v, %v; want succeeded, as Stripe answered", res, err)
	}
	if rows := f.paymentRows(t, ws); len(rows) != 1 || rows[0] != "pi_behind succeeded" {
		t.Fatalf("payments = %q", rows)
	}
}

// A client that leaves once Stripe has created the PaymentIntent must not
// leave the claim without it: a retry with the same key would otherwise
// wait on a claim nobody finishes, then ask Stripe again.
func TestPaymentRecordedWhenTheClientLeavesAfterStripeAnswered(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixture(t, backend.URL(t), billing.Config{})
			ws := f.workspace(t, "alice")
			meta := map[string]string{"workspace_id": ws.String(), "user_id": "alice", "purpose": "credits_pack"}
			f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents",
				Body: stripefake.PaymentIntentJSON("pi_left", "requires_action", 900, "usd", meta)})
			ctx, cancel := context.WithCancel(f.as("alice"))
			defer cancel()
			f.hook.after("POST", "/v1/payment_intents", cancel)
			in := billing.PaymentInput{WorkspaceID: ws, Amount: 900, Currency: "usd", Purpose: "credits_pack",
				IdempotencyKey: "k1", PaymentMethodID: "pm_card_visa"}
			if _, err := f.svc.CreatePaymentIntent(ctx, in); err != nil {
				t.Logf("create with the client gone: %v", err)
			}
			if ctx.Err() == nil {
				t.Fatal("the client's context was not cancelled")
			}
			if rows := f.paymentRows(t, ws); len(rows) != 1 || rows[0] != "pi_left requires_action" {
				t.Fatalf("payments = %q; want pi_left recorded on the claim", rows)
			}
			posts := f.stripe.Count("POST", "/v1/payment_intents")
			res, err := f.svc.CreatePaymentIntent(f.as("alice"), in)
			if err != nil || res.PaymentIntentID != "pi_left" {
				t.Fatalf("retry = %+v, %v", res, err)
			}
			if n := f.stripe.Count("POST", "/v1/payment_intents"); n != posts {
				t.Fatalf("the retry created at Stripe again (%d creates, was %d)", n, posts)
			}
		})
	}
}

// subscriptionRows returns the workspace's subscriptions as "stripe id
// status".
func (f *fixture) subscriptionRows(t *testing.T, ws uuid.UUID) []string {
	t.Helper()
	rows, err := f.store.Client.Subscription.Query().Where(subscription.WorkspaceID(ws)).All(f.sys(ws))
	return describeRows(t, rows, err, func(r *ent.Subscription) (*string, string) { return r.StripeSubscriptionID, r.Status })
}

// newSubscriptionFixture is a fixture whose Stripe answers every create
// of a subscription with sub_race, incomplete, for the workspace.
func newSubscriptionFixture(t *testing.T, dbURL string) (*fixture, uuid.UUID, string) {
	t.Helper()
	f := newFixture(t, dbURL, billing.Config{})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
		ProductMetadata: map[string]string{"plan": "team"}})
	ws := f.workspace(t, "alice")
	sub := subJSON("sub_race", "incomplete", ws, false)
	f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Body: sub})
	return f, ws, sub
}

// The subscription's own webhook can be applied before Stripe's answer to
// our create call is read; the request must still succeed with one row,
// and a retry with the same key must find it.
func TestSubscriptionWhoseWebhookCameFirst(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f, ws, sub := newSubscriptionFixture(t, backend.URL(t))
			created := time.Now().Truncate(time.Second)
			applied := false
			f.hook.after("POST", "/v1/subscriptions", func() {
				f.deliver(t, "evt_sub_created", "customer.subscription.created", sub, created)
				applied = true
			})
			in := billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_monthly", Quantity: 1, IdempotencyKey: "k1"}
			res, err := f.svc.CreateSubscription(f.as("alice"), in)
			if !applied {
				t.Fatal("the webhook was not applied before the answer was read")
			}
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if rows := f.subscriptionRows(t, ws); len(rows) != 1 || rows[0] != "sub_race incomplete" {
				t.Fatalf("subscriptions = %q; want one", rows)
			}
			var again *billing.SubscriptionResult
			if n := f.creates("/v1/subscriptions", func() { again, err = f.svc.CreateSubscription(f.as("alice"), in) }); n != 0 {
				t.Fatalf("the retry created at Stripe again (%d creates)", n)
			}
			if err != nil || again.Subscription.ID != res.Subscription.ID {
				t.Fatalf("retry with the same key = %+v, %v; want subscription %s", again, err, res.Subscription.ID)
			}
			// The webhook's event stays the last one applied: an older
			// event changes nothing.
			f.deliver(t, "evt_sub_older", "customer.subscription.updated", subJSON("sub_race", "canceled", ws, false), created.Add(-time.Minute))
			if rows := f.subscriptionRows(t, ws); len(rows) != 1 || rows[0] != "sub_race incomplete" {
				t.Fatalf("after an older event, subscriptions = %q", rows)
			}
		})
	}
}

// A client that leaves once Stripe has created the subscription must not
// leave its claim `creating`: counted as live, it would refuse every
// later subscription of the workspace.
func TestSubscriptionRecordedWhenTheClientLeavesAfterStripeAnswered(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f, ws, _ := newSubscriptionFixture(t, backend.URL(t))
			ctx, cancel := context.WithCancel(f.as("alice"))
			defer cancel()
			f.hook.after("POST", "/v1/subscriptions", cancel)
			in := billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_monthly", Quantity: 1, IdempotencyKey: "k1"}
			if _, err := f.svc.CreateSubscription(ctx, in); err != nil {
				t.Logf("create with the client gone: %v", err)
			}
			if ctx.Err() == nil {
				t.Fatal("the client's context was not cancelled")
			}
			if rows := f.subscriptionRows(t, ws); len(rows) != 1 || rows[0] != "sub_race incomplete" {
				t.Fatalf("subscriptions = %q; want sub_race recorded on the claim", rows)
			}
		})
	}
}

// Refunds and Checkout Sessions are recorded too when the client leaves
// once Stripe has made them.
func TestRefundAndCheckoutRecordedWhenTheClientLeavesAfterStripeAnswered(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "credits_100", UnitAmount: 500, Active: true,
		ProductMetadata: map[string]string{"plan": "credits"}})
	ws := f.workspace(t, "alice")

	t.Run("Refund", func(t *testing.T) {
		f.deliver(t, "evt_paid", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_paid", "succeeded", 1000, "usd",
			map[string]string{"workspace_id": ws.String(), "purpose": "credits_pack"}), time.Now())
		p, err := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_paid")).Only(f.sys(ws))
		if err != nil {
			t.Fatal(err)
		}
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/refunds", Times: 1,
			Body: `{"id":"re_left","object":"refund","amount":300,"currency":"usd","status":"pending","payment_intent":"pi_paid"}`})
		ctx, cancel := context.WithCancel(auth.NewContext(f.ctx, auth.Viewer{UserID: "root", Admin: true}))
		defer cancel()
		f.hook.after("POST", "/v1/refunds", cancel)
		amount := int64(300)
		if _, err := f.svc.RefundPayment(ctx, billing.RefundInput{PaymentID: p.ID, Amount: &amount, Reason: "requested_by_customer", IdempotencyKey: "r1"}); err != nil {
			t.Logf("refund with the client gone: %v", err)
		}
		if ctx.Err() == nil {
			t.Fatal("the client's context was not cancelled")
		}
		rows, err := f.store.Client.Refund.Query().Where(refund.PaymentID(p.ID)).All(f.sys(ws))
		if err != nil || len(rows) != 1 || rows[0].StripeRefundID == nil || *rows[0].StripeRefundID != "re_left" {
			t.Fatalf("refunds = %+v, %v; want re_left recorded on the claim", rows, err)
		}
	})
	t.Run("CheckoutSession", func(t *testing.T) {
		ctx, cancel := context.WithCancel(f.as("alice"))
		defer cancel()
		f.hook.after("POST", "/v1/checkout/sessions", cancel)
		if _, err := f.svc.CreateCheckoutSession(ctx, billing.CheckoutInput{WorkspaceID: ws, LookupKey: "credits_100", Mode: "payment", Quantity: 1}); err != nil {
			t.Logf("checkout with the client gone: %v", err)
		}
		if ctx.Err() == nil {
			t.Fatal("the client's context was not cancelled")
		}
		rows, err := f.store.Client.CheckoutSession.Query().Where(checkoutsession.WorkspaceID(ws)).All(f.sys(ws))
		if err != nil || len(rows) != 1 || rows[0].StripeSessionID == nil || rows[0].Status == checkoutsession.StatusCreating {
			t.Fatalf("checkout sessions = %+v, %v; want the session recorded on the claim", rows, err)
		}
	})
}

// A workspace with a subscription cannot start a second one through
// Checkout, which would bill both; a one-time Checkout stays open to it.
func TestCheckoutRefusesASecondSubscription(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f, ws, _ := newSubscriptionFixture(t, backend.URL(t))
			f.stripe.SetPrices(
				stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true, ProductMetadata: map[string]string{"plan": "team"}},
				stripefake.Price{LookupKey: "credits_100", UnitAmount: 500, Active: true, ProductMetadata: map[string]string{"plan": "credits"}})
			sub := billing.CheckoutInput{WorkspaceID: ws, LookupKey: "team_monthly", Mode: "subscription", Quantity: 1}
			sub.IdempotencyKey = "first"
			first, err := f.svc.CreateCheckoutSession(f.as("alice"), sub)
			if err != nil {
				t.Fatalf("checkout for a first subscription: %v", err)
			}
			if _, err := f.svc.CreateSubscription(f.as("alice"), billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_monthly", Quantity: 1}); err != nil {
				t.Fatal(err)
			}
			// The first request, repeated once the workspace subscribed,
			// is still answered with its session.
			if again, err := f.svc.CreateCheckoutSession(f.as("alice"), sub); err != nil || again.ID != first.ID {
				t.Fatalf("repeat of the first checkout = %+v, %v; want its session", again, err)
			}
			sessions := f.stripe.Count("POST", "/v1/checkout/sessions")
			sub.IdempotencyKey = "second"
			_, err = f.svc.CreateCheckoutSession(f.as("alice"), sub)
			if billing.ErrorCode(err) != billing.CodeBadUserInput {
				t.Fatalf("checkout for a second subscription: %v; want BAD_USER_INPUT", err)
			}
			if n := f.stripe.Count("POST", "/v1/checkout/sessions"); n != sessions {
				t.Fatal("a refused checkout reached Stripe")
			}
			if _, err := f.svc.CreateCheckoutSession(f.as("alice"), billing.CheckoutInput{WorkspaceID: ws, LookupKey: "credits_100", Mode: "payment", Quantity: 1}); err != nil {
				t.Fatalf("one-time checkout beside the subscription: %v", err)
			}
		})
	}
}

// A subscription claim left `creating` by a request that died (a crash
// mid-call) stops counting as the workspace's subscription once it is
// stale; a fresh one still does.
func TestStaleSubscriptionClaimDoesNotBlockTheWorkspace(t *testing.T) {
	f, ws, _ := newSubscriptionFixture(t, testenv.Postgres(t))
	claim, err := f.store.Client.Subscription.Create().SetWorkspaceID(ws).SetRequestKey("sub-dead").
		SetPlan("team").SetLookupKey("team_monthly").SetPriceID("price_team_monthly").SetCreatedBy("alice").
		Save(f.sys(ws))
	if err != nil || claim.Status != "creating" {
		t.Fatalf("claim = %+v, %v", claim, err)
	}
	in := billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_monthly", Quantity: 1, IdempotencyKey: "k2"}
	if _, err := f.svc.CreateSubscription(f.as("alice"), in); billing.ErrorCode(err) != billing.CodeBadUserInput {
		t.Fatalf("with a claim in flight: %v; want BAD_USER_INPUT", err)
	}
	if err := f.store.Client.Subscription.UpdateOne(claim).SetUpdateTime(time.Now().Add(-3 * time.Minute)).Exec(f.sys(ws)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.CreateSubscription(f.as("alice"), in); err != nil {
		t.Fatalf("with a stale claim: %v", err)
	}
}

// An idempotency key names one request: reused with any other detail
// that changes what is made, it is refused on idempotencyKey, never taken
// for a second refund or payment nor answered with the first one.
func TestIdempotencyKeyReusedWithOtherDetailsIsRefused(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{})
	ws := f.workspace(t, "alice")
	admin := auth.NewContext(f.ctx, auth.Viewer{UserID: "root", Admin: true})

	t.Run("Refund", func(t *testing.T) {
		p := f.paidPayment(t, ws, "pi_key", 1000)
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/refunds", Times: 1,
			Body: `{"id":"re_key","object":"refund","amount":300,"currency":"usd","status":"succeeded","payment_intent":"pi_key"}`})
		base := billing.RefundInput{PaymentID: p.ID, Amount: ptr(int64(300)), Reason: "requested_by_customer",
			ReasonDetail: "asked by email", IdempotencyKey: "same-key"}
		first, err := f.svc.RefundPayment(admin, base)
		if err != nil {
			t.Fatal(err)
		}
		posts := f.stripe.Count("POST", "/v1/refunds")
		for name, change := range map[string]func(*billing.RefundInput){
			"AnotherAmount":       func(in *billing.RefundInput) { in.Amount = ptr(int64(400)) },
			"NoAmount":            func(in *billing.RefundInput) { in.Amount = nil },
			"AnotherReason":       func(in *billing.RefundInput) { in.Reason = "duplicate" },
			"AnotherReasonDetail": func(in *billing.RefundInput) { in.ReasonDetail = "asked by phone" },
			"NoReasonDetail":      func(in *billing.RefundInput) { in.ReasonDetail = "" },
		} {
			t.Run(name, func(t *testing.T) {
				in := base
				change(&in)
				_, err := f.svc.RefundPayment(admin, in)
				assertKeyReused(t, err)
			})
		}
		if again, err := f.svc.RefundPayment(admin, base); err != nil || again.ID != first.ID {
			t.Fatalf("same key, same details = %+v, %v; want the first refund", again, err)
		}
		if n := f.stripe.Count("POST", "/v1/refunds"); n != posts {
			t.Fatalf("%d more refunds sent to Stripe", n-posts)
		}
		if n, _ := f.store.Client.Refund.Query().Where(refund.PaymentID(p.ID)).Count(f.sys(ws)); n != 1 {
			t.Fatalf("%d refunds recorded; want 1", n)
		}
	})
	// Once a refund of everything left is made, nothing is refundable: its
	// retry must still find it rather than be told so.
	t.Run("FullRefundRetriedOnceRefunded", func(t *testing.T) {
		p := f.paidPayment(t, ws, "pi_full", 800)
		f.stripe.On(stripefake.Rule{Method: "POST", Path: "/v1/refunds", Times: 1,
			Body: `{"id":"re_full","object":"refund","amount":800,"currency":"usd","status":"pending","payment_intent":"pi_full"}`})
		in := billing.RefundInput{PaymentID: p.ID, Reason: "requested_by_customer", IdempotencyKey: "all-of-it"}
		first, err := f.svc.RefundPayment(admin, in)
		if err != nil || first.Amount != 800 {
			t.Fatalf("full refund = %+v, %v", first, err)
		}
		if again, err := f.svc.RefundPayment(admin, in); err != nil || again.ID != first.ID {
			t.Fatalf("retry of the full refund = %+v, %v; want the first refund", again, err)
		}
		in.IdempotencyKey = "more"
		if _, err := f.svc.RefundPayment(admin, in); billing.ErrorCode(err) != billing.CodeBadUserInput {
			t.Fatalf("another refund of a refunded payment: %v; want BAD_USER_INPUT", err)
		}
	})
	t.Run("Payment", func(t *testing.T) {
		base := billing.PaymentInput{WorkspaceID: ws, Amount: 1500, Currency: "usd", Purpose: "credits_pack", IdempotencyKey: "order-1"}
		first, err := f.svc.CreatePaymentIntent(f.as("alice"), base)
		if err != nil {
			t.Fatal(err)
		}
		posts := f.stripe.Count("POST", "/v1/payment_intents")
		for name, change := range map[string]func(*billing.PaymentInput){
			"AnotherAmount":        func(in *billing.PaymentInput) { in.Amount = 1600 },
			"AnotherCurrency":      func(in *billing.PaymentInput) { in.Currency = "eur" },
			"AnotherPurpose":       func(in *billing.PaymentInput) { in.Purpose = "donation" },
			"AnAddedPaymentMethod": func(in *billing.PaymentInput) { in.PaymentMethodID = "pm_card_visa" },
		} {
			t.Run(name, func(t *testing.T) {
				in := base
				change(&in)
				_, err := f.svc.CreatePaymentIntent(f.as("alice"), in)
				assertKeyReused(t, err)
			})
		}
		// The currency's case is not a detail: USD is usd.
		same := base
		same.Currency = "USD"
		if again, err := f.svc.CreatePaymentIntent(f.as("alice"), same); err != nil || again.Payment.ID != first.Payment.ID {
			t.Fatalf("same key, same details = %+v, %v; want the first payment", again, err)
		}
		if n := f.stripe.Count("POST", "/v1/payment_intents"); n != posts {
			t.Fatalf("%d more PaymentIntents created for the same key", n-posts)
		}
	})
}

// With a client's key, a Checkout or a subscription request is found by
// the key alone: another plan, quantity or option under it is refused,
// where it used to open a second session (or be refused as a second
// subscription, on workspaceId).
func TestCheckoutAndSubscriptionKeysBindEveryDetail(t *testing.T) {
	f, ws, _ := newSubscriptionFixture(t, testenv.Postgres(t))
	f.stripe.SetPrices(
		stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true, ProductMetadata: map[string]string{"plan": "team"}},
		stripefake.Price{LookupKey: "team_yearly", UnitAmount: 9000, Interval: "year", Active: true, ProductMetadata: map[string]string{"plan": "team"}},
		stripefake.Price{LookupKey: "credits_100", UnitAmount: 500, Active: true, ProductMetadata: map[string]string{"plan": "credits"}})

	t.Run("Checkout", func(t *testing.T) {
		base := billing.CheckoutInput{WorkspaceID: ws, LookupKey: "team_monthly", Mode: "subscription", Quantity: 1, IdempotencyKey: "co-1"}
		first, err := f.svc.CreateCheckoutSession(f.as("alice"), base)
		if err != nil {
			t.Fatal(err)
		}
		sessions := f.stripe.Count("POST", "/v1/checkout/sessions")
		for name, change := range map[string]func(*billing.CheckoutInput){
			"AnotherPlan":           func(in *billing.CheckoutInput) { in.LookupKey = "team_yearly" },
			"AnotherQuantity":       func(in *billing.CheckoutInput) { in.Quantity = 2 },
			"PromotionCodesAllowed": func(in *billing.CheckoutInput) { in.AllowPromotionCodes = true },
			"AnotherModeAndPlan":    func(in *billing.CheckoutInput) { in.Mode, in.LookupKey = "payment", "credits_100" },
		} {
			t.Run(name, func(t *testing.T) {
				in := base
				change(&in)
				_, err := f.svc.CreateCheckoutSession(f.as("alice"), in)
				assertKeyReused(t, err)
			})
		}
		if again, err := f.svc.CreateCheckoutSession(f.as("alice"), base); err != nil || again.ID != first.ID {
			t.Fatalf("same key, same details = %+v, %v; want the first session", again, err)
		}
		if n := f.stripe.Count("POST", "/v1/checkout/sessions"); n != sessions {
			t.Fatalf("%d more sessions created for the same key", n-sessions)
		}
	})
	t.Run("Subscription", func(t *testing.T) {
		base := billing.SubscriptionInput{WorkspaceID: ws, LookupKey: "team_monthly", Quantity: 1, IdempotencyKey: "sub-1"}
		first, err := f.svc.CreateSubscription(f.as("alice"), base)
		if err != nil {
			t.Fatal(err)
		}
		creates := f.stripe.Count("POST", "/v1/subscriptions")
		for name, change := range map[string]func(*billing.SubscriptionInput){
			"AnotherPlan":     func(in *billing.SubscriptionInput) { in.LookupKey = "team_yearly" },
			"AnotherQuantity": func(in *billing.SubscriptionInput) { in.Quantity = 2 },
			"ATrial":          func(in *billing.SubscriptionInput) { in.TrialPeriodDays = ptr(int64(14)) },
		} {
			t.Run(name, func(t *testing.T) {
				in := base
				change(&in)
				_, err := f.svc.CreateSubscription(f.as("alice"), in)
				assertKeyReused(t, err)
			})
		}
		if again, err := f.svc.CreateSubscription(f.as("alice"), base); err != nil || again.Subscription.ID != first.Subscription.ID {
			t.Fatalf("same key, same details = %+v, %v; want the first subscription", again, err)
		}
		if n := f.stripe.Count("POST", "/v1/subscriptions"); n != creates {
			t.Fatalf("%d more subscriptions created for the same key", n-creates)
		}
	})
}

// paidPayment records a succeeded PaymentIntent of the workspace, as its
// webhook does, and returns its row.
func (f *fixture) paidPayment(t *testing.T, ws uuid.UUID, intent string, amount int64) *ent.Payment {
	t.Helper()
	f.deliver(t, "evt_"+intent, "payment_intent.succeeded", stripefake.PaymentIntentJSON(intent, "succeeded", amount, "usd",
		map[string]string{"workspace_id": ws.String(), "purpose": "credits_pack"}), time.Now())
	p, err := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID(intent)).Only(f.sys(ws))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// assertKeyReused fails the test unless err refuses a reused idempotency
// key: BAD_USER_INPUT on idempotencyKey.
func assertKeyReused(t *testing.T, err error) {
	t.Helper()
	var be *billing.Error
	if !errors.As(err, &be) || be.Code != billing.CodeBadUserInput || be.Field != "idempotencyKey" {
		t.Fatalf("err = %v; want BAD_USER_INPUT on idempotencyKey", err)
	}
}

func ptr[T any](v T) *T { return &v }
