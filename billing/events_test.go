package billing_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/hook"
	"billingapi/ent/invoice"
	"billingapi/ent/payment"
	"billingapi/ent/predicate"
	"billingapi/ent/subscription"
	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// deliver stores an event as the webhook endpoint would and applies it.
func (f *fixture) deliver(t *testing.T, eventID, eventType, object string, created time.Time) billing.EventOutcome {
	t.Helper()
	payload := stripefake.Event(eventID, eventType, object, created)
	ev := decodeEvent(t, payload)
	svc := auth.NewContext(f.ctx, auth.ServiceViewer(auth.WebhooksService))
	row, err := f.store.Client.WebhookEvent.Create().SetStripeEventID(ev.ID).SetType(eventType).
		SetAPIVersion(stripe.APIVersion).SetCreated(created).SetLivemode(false).SetPayload(payload).
		SetNextAttemptAt(time.Now()).Save(svc)
	if err != nil {
		t.Fatalf("store event: %v", err)
	}
	out, err := f.svc.ApplyEvent(f.ctx, row.ID, ev)
	if err != nil {
		t.Fatalf("apply %s: %v", eventType, err)
	}
	return out
}

// decodeEvent decodes a payload as the worker does.
func decodeEvent(tb testing.TB, payload []byte) *billing.Event {
	tb.Helper()
	ev, err := billing.DecodeEvent(payload)
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// eventRow returns the stored event with a Stripe id.
func (f *fixture) eventRow(t *testing.T, stripeID string) *ent.WebhookEvent {
	t.Helper()
	row, err := f.store.Client.WebhookEvent.Query().Where(webhookevent.StripeEventID(stripeID)).
		Only(auth.NewContext(f.ctx, auth.ServiceViewer(auth.WebhooksService)))
	if err != nil {
		t.Fatal(err)
	}
	return row
}

func (f *fixture) sys(ws uuid.UUID) context.Context {
	return auth.NewContext(f.ctx, auth.SystemViewer(ws))
}

func subJSON(id, status string, ws uuid.UUID, cancelAtEnd bool) string {
	return stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: id, Status: status, PriceID: "price_team_monthly", LookupKey: "team_monthly", CancelAtPeriodEnd: cancelAtEnd,
		Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"},
	})
}

func TestApplyEvent(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixture(t, backend.URL(t), billing.Config{})
			f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
				ProductID: "prod_team", ProductMetadata: map[string]string{"plan": "team", "feature_set": "a,b"}})
			ws := f.workspace(t, "alice")
			meta := map[string]string{"workspace_id": ws.String(), "user_id": "alice", "purpose": "credits_pack"}
			t0 := time.Now().Add(-time.Hour).Truncate(time.Second)

			t.Run("PaymentSucceededRecordsThePayment", func(t *testing.T) {
				out := f.deliver(t, "evt_pi_1", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_1", "succeeded", 1999, "usd", meta), t0)
				if out.Status != webhookevent.StatusProcessed || out.Workspace != ws {
					t.Fatalf("outcome = %+v", out)
				}
				p, err := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_1")).Only(f.sys(ws))
				if err != nil || p.Status != payment.StatusSucceeded || p.Amount != 1999 || p.Purpose != "credits_pack" || p.CreatedBy != "alice" {
					t.Fatalf("payment = %+v, %v", p, err)
				}
				if ev := f.eventRow(t, "evt_pi_1"); ev.Status != webhookevent.StatusProcessed || ev.ProcessedAt == nil || ev.WorkspaceID == nil || *ev.WorkspaceID != ws {
					t.Fatalf("event row = %+v", ev)
				}
			})
			t.Run("OlderFailureNeverUndoesASuccess", func(t *testing.T) {
				f.deliver(t, "evt_pi_1_failed", "payment_intent.payment_failed", stripefake.PaymentIntentJSON("pi_1", "requires_payment_method", 1999, "usd", meta), t0.Add(-time.Minute))
				p, _ := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_1")).Only(f.sys(ws))
				if p.Status != payment.StatusSucceeded {
					t.Fatalf("status = %s after an older failure event", p.Status)
				}
			})
			t.Run("PaymentFailedMarksFailedWithTheCode", func(t *testing.T) {
				pi := `{"id":"pi_2","object":"payment_intent","status":"requires_payment_method","amount":500,"currency":"usd",` +
					`"metadata":{"workspace_id":"` + ws.String() + `"},"last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds"}}`
				f.deliver(t, "", "payment_intent.payment_failed", pi, t0)
				p, _ := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_2")).Only(f.sys(ws))
				if p.Status != payment.StatusFailed || p.LastErrorCode != "insufficient_funds" {
					t.Fatalf("payment = %+v", p)
				}
			})
			t.Run("SameEventTwiceAppliesOnce", func(t *testing.T) {
				payload := stripefake.Event("evt_twice", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_3", "succeeded", 700, "usd", meta), t0)
				ev := decodeEvent(t, payload)
				row := f.eventRow(t, "evt_pi_1") // any processed row
				out, err := f.svc.ApplyEvent(f.ctx, row.ID, ev)
				if err != nil || !out.Duplicate {
					t.Fatalf("re-applying a processed event: %+v, %v", out, err)
				}
				if n, _ := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_3")).Count(f.sys(ws)); n != 0 {
					t.Fatal("a duplicate delivery had an effect")
				}
			})
			t.Run("SubscriptionCreatedFromCheckoutIsRecordedAndCached", func(t *testing.T) {
				f.deliver(t, "", "customer.subscription.created", subJSON("sub_1", "active", ws, false), t0)
				wsRow, _ := f.svc.Workspace(f.as("alice"), ws)
				st, err := f.svc.StatusOf(f.as("alice"), wsRow)
				if err != nil || st.Subscription == nil || st.Subscription.StripeSubscriptionID != "sub_1" ||
					st.Access.Level != billing.AccessFull || strings.Join(st.Access.Features, ",") != "a,b" {
					t.Fatalf("status = %+v, %v", st, err)
				}
			})
			t.Run("UpdatedAfterDeletedLeavesItCanceled", func(t *testing.T) {
				version := func() int64 {
					t.Helper()
					row, err := f.svc.Workspace(f.as("alice"), ws)
					if err != nil {
						t.Fatal(err)
					}
					return row.BillingVersion
				}
				v0 := version()
				f.deliver(t, "", "customer.subscription.deleted", subJSON("sub_1", "canceled", ws, false), t0.Add(2*time.Minute))
				v1 := version()
				f.deliver(t, "", "customer.subscription.updated", subJSON("sub_1", "active", ws, true), t0.Add(time.Minute))
				// The billing version names the state plan changes are keyed on:
				// a change moves it on once, an event that changes nothing not at all.
				if v2 := version(); v1 != v0+1 || v2 != v1 {
					t.Errorf("billing versions %d, %d, %d; want one step for the deletion, none for the late update", v0, v1, v2)
				}
				wsRow, _ := f.svc.Workspace(f.as("alice"), ws)
				st, _ := f.svc.StatusOf(f.as("alice"), wsRow)
				if st.Subscription.Status != "canceled" || st.Access.Level != billing.AccessNone {
					t.Fatalf("after a late update: %+v", st)
				}
			})
			t.Run("CreatedArrivingAfterUpdatedChangesNothing", func(t *testing.T) {
				f.deliver(t, "", "customer.subscription.updated", subJSON("sub_2", "past_due", ws, false), t0.Add(5*time.Minute))
				f.deliver(t, "", "customer.subscription.created", subJSON("sub_2", "incomplete", ws, false), t0.Add(4*time.Minute))
				row, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_2")).Only(f.sys(ws))
				if err != nil || row.Status != "past_due" {
					t.Fatalf("row = %+v, %v", row, err)
				}
			})
			t.Run("SameSecondTieAsksStripe", func(t *testing.T) {
				at := t0.Add(10 * time.Minute)
				f.deliver(t, "evt_tie_1", "customer.subscription.updated", subJSON("sub_2", "active", ws, false), at)
				f.stripe.On(stripefake.Rule{Method: "GET", Path: "/v1/subscriptions/sub_2", Times: 1, Body: subJSON("sub_2", "unpaid", ws, false)})
				f.deliver(t, "evt_tie_2", "customer.subscription.updated", subJSON("sub_2", "active", ws, false), at)
				row, _ := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_2")).Only(f.sys(ws))
				if row.Status != "unpaid" || f.stripe.Count("GET", "/v1/subscriptions/sub_2") != 1 {
					t.Fatalf("tie: status %s, Stripe asked %d times", row.Status, f.stripe.Count("GET", "/v1/subscriptions/sub_2"))
				}
			})
			t.Run("InvoicesKeepTheBillingHistory", func(t *testing.T) {
				f.deliver(t, "", "invoice.payment_failed", stripefake.InvoiceJSON("in_1", "cus_x", "sub_2", "open", 900, 0, map[string]string{"workspace_id": ws.String()}), t0)
				inv, err := f.store.Client.Invoice.Query().Where(invoice.StripeInvoiceID("in_1")).Only(f.sys(ws))
				if err != nil || !inv.PaymentFailed || inv.Status != "open" || inv.AmountDue != 900 {
					t.Fatalf("failed invoice = %+v, %v", inv, err)
				}
				f.deliver(t, "", "invoice.payment_succeeded", stripefake.InvoiceJSON("in_1", "cus_x", "sub_2", "paid", 900, 900, map[string]string{"workspace_id": ws.String()}), t0.Add(time.Minute))
				inv, _ = f.store.Client.Invoice.Query().Where(invoice.StripeInvoiceID("in_1")).Only(f.sys(ws))
				if inv.PaymentFailed || inv.Status != "paid" || inv.AmountPaid != 900 || inv.HostedInvoiceURL == "" || inv.InvoicePdf == "" ||
					inv.PeriodStart == nil || inv.StripeSubscriptionID != "sub_2" {
					t.Fatalf("paid invoice = %+v", inv)
				}
			})
			t.Run("PriceAndProductEventsInvalidateThePriceCache", func(t *testing.T) {
				for _, ev := range []struct{ typ, obj string }{
					{"price.updated", `{"id":"price_team_monthly","object":"price","lookup_key":"team_monthly"}`},
					{"product.updated", `{"id":"prod_team","object":"product"}`},
				} {
					if _, err := f.svc.Price(f.ctx, "team_monthly"); err != nil { // warm
						t.Fatal(err)
					}
					before := f.stripe.Count("GET", "/v1/prices")
					if out := f.deliver(t, "", ev.typ, ev.obj, time.Now()); out.Status != webhookevent.StatusSkipped {
						t.Fatalf("%s outcome = %+v", ev.typ, out)
					}
					if _, err := f.svc.Price(f.ctx, "team_monthly"); err != nil {
						t.Fatal(err)
					}
					if f.stripe.Count("GET", "/v1/prices") != before+1 {
						t.Errorf("%s did not invalidate the cached price", ev.typ)
					}
				}
			})
			t.Run("CustomerDeletedUnlinksIt", func(t *testing.T) {
				cus, err := f.svc.EnsureCustomer(f.as("alice"), ws)
				if err != nil {
					t.Fatal(err)
				}
				f.deliver(t, "", "customer.deleted", `{"id":"`+cus+`","object":"customer","deleted":true,"metadata":{}}`, time.Now())
				wsRow, _ := f.svc.Workspace(f.as("alice"), ws)
				if wsRow.StripeCustomerID != nil {
					t.Fatalf("customer still linked: %s", *wsRow.StripeCustomerID)
				}
			})
			t.Run("ObjectOfAnotherWorkspaceIsSkippedAndLeftAlone", func(t *testing.T) {
				other := f.workspace(t, "bob")
				otherMeta := map[string]string{"workspace_id": other.String()}
				// sub_2, pi_1 and in_1 are alice's; bob's metadata names
				// them in newer events.
				for _, ev := range []struct{ typ, obj, kind string }{
					{"customer.subscription.updated", subJSON("sub_2", "canceled", other, false), "subscription sub_2"},
					{"payment_intent.payment_failed", stripefake.PaymentIntentJSON("pi_1", "requires_payment_method", 1999, "usd", otherMeta), "payment pi_1"},
					{"invoice.voided", stripefake.InvoiceJSON("in_1", "cus_x", "sub_2", "void", 900, 0, otherMeta), "invoice in_1"},
				} {
					out := f.deliver(t, "", ev.typ, ev.obj, time.Now())
					if out.Status != webhookevent.StatusSkipped || !strings.Contains(out.Reason, ev.kind+" is recorded for another workspace") {
						t.Errorf("%s naming bob: %+v", ev.typ, out)
					}
				}
				sub, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_2")).Only(f.sys(ws))
				if err != nil {
					t.Fatalf("alice's subscription sub_2 (an earlier subtest's): %v", err)
				}
				p, err := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_1")).Only(f.sys(ws))
				if err != nil {
					t.Fatalf("alice's payment pi_1 (an earlier subtest's): %v", err)
				}
				inv, err := f.store.Client.Invoice.Query().Where(invoice.StripeInvoiceID("in_1")).Only(f.sys(ws))
				if err != nil {
					t.Fatalf("alice's invoice in_1 (an earlier subtest's): %v", err)
				}
				if sub.Status != "unpaid" || p.Status != payment.StatusSucceeded || inv.Status != "paid" {
					t.Fatalf("alice's objects changed: subscription %s, payment %s, invoice %s", sub.Status, p.Status, inv.Status)
				}
			})
			t.Run("UnknownTypeAndUnknownWorkspaceAreSkipped", func(t *testing.T) {
				if out := f.deliver(t, "", "customer.tax_id.created", `{"id":"txi_1","object":"tax_id"}`, time.Now()); out.Status != webhookevent.StatusSkipped || !strings.Contains(out.Reason, "unhandled") {
					t.Fatalf("unknown type: %+v", out)
				}
				stranger := map[string]string{"workspace_id": uuid.NewString()}
				if out := f.deliver(t, "", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_lost", "succeeded", 100, "usd", stranger), time.Now()); out.Status != webhookevent.StatusSkipped || !strings.Contains(out.Reason, "no workspace") {
					t.Fatalf("unknown workspace: %+v", out)
				}
			})
		})
	}
}

func subscriptionStripeID(id string) predicate.Subscription {
	return subscription.StripeSubscriptionID(id)
}

func TestInvoiceLifecycleEvents(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{})
	ws := f.workspace(t, "alice")
	meta := map[string]string{"workspace_id": ws.String()}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	steps := []struct {
		eventType, status string
		paid              int64
		wantStatus        string
		wantFailed        bool
	}{
		{"invoice.created", "draft", 0, "draft", false},
		{"invoice.finalized", "open", 0, "open", false},
		{"invoice.payment_failed", "open", 0, "open", true},
		{"invoice.paid", "paid", 1200, "paid", false},
		{"invoice.voided", "void", 0, "void", false},
	}
	for i, st := range steps {
		f.deliver(t, "", st.eventType, stripefake.InvoiceJSON("in_life", "cus_x", "", st.status, 1200, st.paid, meta), t0.Add(time.Duration(i)*time.Minute))
		inv, err := f.store.Client.Invoice.Query().Where(invoice.StripeInvoiceID("in_life")).Only(f.sys(ws))
		if err != nil || inv.Status != st.wantStatus || inv.PaymentFailed != st.wantFailed {
			t.Fatalf("after %s: %+v, %v", st.eventType, inv, err)
		}
	}
	// A late created event does not roll the voided invoice back.
	f.deliver(t, "", "invoice.created", stripefake.InvoiceJSON("in_life", "cus_x", "", "draft", 1200, 0, meta), t0)
	if inv, _ := f.store.Client.Invoice.Query().Where(invoice.StripeInvoiceID("in_life")).Only(f.sys(ws)); inv.Status != "void" {
		t.Fatalf("a late event rolled the invoice back to %s", inv.Status)
	}
}

// An invoice is often created, finalized and paid within one second, and
// Stripe's timestamps are whole seconds: events of the same second apply
// in the order of the invoice's life, whatever order they arrive in.
func TestInvoiceEventsOfOneSecond(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixture(t, backend.URL(t), billing.Config{})
			ws := f.workspace(t, "alice")
			meta := map[string]string{"workspace_id": ws.String()}
			t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
			state := func() string {
				inv, err := f.store.Client.Invoice.Query().Where(invoice.StripeInvoiceID("in_tie")).Only(f.sys(ws))
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprintf("%s paid=%d failed=%v", inv.Status, inv.AmountPaid, inv.PaymentFailed)
			}
			f.deliver(t, "", "invoice.created", stripefake.InvoiceJSON("in_tie", "cus_x", "", "draft", 1200, 0, meta), t0)
			f.deliver(t, "", "invoice.payment_failed", stripefake.InvoiceJSON("in_tie", "cus_x", "", "open", 1200, 0, meta), t0)
			if got := state(); got != "open paid=0 failed=true" {
				t.Fatalf("after created and payment_failed = %s; want a later stage to apply", got)
			}
			f.deliver(t, "", "invoice.paid", stripefake.InvoiceJSON("in_tie", "cus_x", "", "paid", 1200, 1200, meta), t0)
			for _, late := range []struct{ eventType, status string }{{"invoice.finalized", "open"}, {"invoice.created", "draft"}, {"invoice.payment_failed", "open"}} {
				f.deliver(t, "", late.eventType, stripefake.InvoiceJSON("in_tie", "cus_x", "", late.status, 1200, 0, meta), t0)
				if got := state(); got != "paid paid=1200 failed=false" {
					t.Fatalf("%s of the same second rolled the paid invoice back: %s", late.eventType, got)
				}
			}
		})
	}
}

// A PaymentIntent confirmed with a 3D Secure card is created and asks for
// authentication within one second: a payment_intent.created delivered
// after payment_intent.requires_action must not move the payment back.
func TestPaymentEventsOfOneSecond(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixture(t, backend.URL(t), billing.Config{})
			ws := f.workspace(t, "alice")
			meta := map[string]string{"workspace_id": ws.String()}
			t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
			status := func() payment.Status {
				p, err := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_tie")).Only(f.sys(ws))
				if err != nil {
					t.Fatal(err)
				}
				return p.Status
			}
			f.deliver(t, "", "payment_intent.requires_action", stripefake.PaymentIntentJSON("pi_tie", "requires_action", 5000, "usd", meta), t0)
			f.deliver(t, "", "payment_intent.created", stripefake.PaymentIntentJSON("pi_tie", "requires_confirmation", 5000, "usd", meta), t0)
			if got := status(); got != payment.StatusRequiresAction {
				t.Fatalf("a late created event of the same second moved the payment to %s", got)
			}
			f.deliver(t, "", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_tie", "succeeded", 5000, "usd", meta), t0)
			f.deliver(t, "", "payment_intent.requires_action", stripefake.PaymentIntentJSON("pi_tie", "requires_action", 5000, "usd", meta), t0)
			if got := status(); got != payment.StatusSucceeded {
				t.Fatalf("after succeeded, a requires_action of the same second left %s", got)
			}
			f.deliver(t, "", "payment_intent.created", stripefake.PaymentIntentJSON("pi_tie2", "requires_payment_method", 900, "usd", meta), t0)
			f.deliver(t, "", "payment_intent.processing", stripefake.PaymentIntentJSON("pi_tie2", "processing", 900, "usd", meta), t0)
			p, err := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_tie2")).Only(f.sys(ws))
			if err != nil || p.Status != payment.StatusProcessing {
				t.Fatalf("a later stage of the same second did not apply: %v %v", p, err)
			}
		})
	}
}

// invoice.upcoming describes a preview with no id: nothing is recorded,
// and it does not block another workspace's preview.
func TestUpcomingInvoiceIsNotRecorded(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{})
	for _, owner := range []string{"alice", "bob"} {
		ws := f.workspace(t, owner)
		out := f.deliver(t, "", "invoice.upcoming", stripefake.InvoiceJSON("", "cus_"+owner, "", "draft", 5000, 0, map[string]string{"workspace_id": ws.String()}), time.Now())
		if out.Status != webhookevent.StatusSkipped {
			t.Fatalf("%s's invoice.upcoming: %+v; want skipped", owner, out)
		}
		if n, err := f.store.Client.Invoice.Query().Count(f.sys(ws)); err != nil || n != 0 {
			t.Fatalf("%s's invoices = %d, %v; want none", owner, n, err)
		}
	}
}

// A subscription event whose plan cannot be read (Stripe's prices API
// failing) fails and is retried, instead of recording the subscription
// without its plan's features until its next event, a month later.
func TestSubscriptionEventWaitsForItsPlan(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
		ProductID: "prod_team", ProductMetadata: map[string]string{"plan": "team", "feature_set": "a,b"}})
	ws := f.workspace(t, "alice")
	f.stripe.On(stripefake.Rule{Method: "GET", Path: "/v1/prices", Status: 500,
		Body: stripefake.StripeError("api_error", "", "", "An unknown error occurred.")})
	payload := stripefake.Event("evt_plan", "customer.subscription.created", subJSON("sub_plan", "active", ws, false), time.Now())
	ev := decodeEvent(t, payload)
	svc := auth.NewContext(f.ctx, auth.ServiceViewer(auth.WebhooksService))
	row, err := f.store.Client.WebhookEvent.Create().SetStripeEventID(ev.ID).SetType(ev.Type).
		SetAPIVersion(stripe.APIVersion).SetCreated(time.Now()).SetLivemode(false).SetPayload(payload).
		SetNextAttemptAt(time.Now()).Save(svc)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := f.svc.ApplyEvent(f.ctx, row.ID, ev); err == nil {
		t.Fatalf("applied with the prices API down: %+v; want an error, so that it is retried", out)
	}
	if n, _ := f.store.Client.Subscription.Query().Count(f.sys(ws)); n != 0 {
		t.Fatalf("%d subscriptions recorded without their plan", n)
	}
	f.stripe.ClearRules()
	out, err := f.svc.ApplyEvent(f.ctx, row.ID, ev)
	if err != nil || out.Status != webhookevent.StatusProcessed {
		t.Fatalf("retry = %+v, %v", out, err)
	}
	sub, err := f.store.Client.Subscription.Query().Only(f.sys(ws))
	if err != nil || strings.Join(sub.Features, ",") != "a,b" {
		t.Fatalf("subscription = %+v, %v; want the plan's features a,b", sub, err)
	}
}

// Another replica can apply an event of the same second between this
// event's planning (which saw no tie) and its transaction. Which one is
// newer cannot be told from their timestamps: the event is retried, and
// its planning then reads the subscription from Stripe.
func TestSubscriptionTieAppliedAfterPlanningIsRetried(t *testing.T) {
	f := newFixtureWithEmbeddedRedis(t, testenv.Postgres(t), billing.Config{})
	f.stripe.SetPrices(stripefake.Price{LookupKey: "team_monthly", UnitAmount: 900, Interval: "month", Active: true,
		ProductID: "prod_team", ProductMetadata: map[string]string{"plan": "team"}})
	ws := f.workspace(t, "alice")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	f.deliver(t, "evt_tie_0", "customer.subscription.created", subJSON("sub_tie", "incomplete", ws, false), t0.Add(-time.Minute))
	// Stripe's state now: the other event's (active) is the newer one.
	f.stripe.On(stripefake.Rule{Method: "GET", Path: "/v1/subscriptions/sub_tie", Body: subJSON("sub_tie", "active", ws, false)})

	payload := stripefake.Event("evt_tie_b", "customer.subscription.updated", subJSON("sub_tie", "past_due", ws, false), t0)
	ev := decodeEvent(t, payload)
	svc := auth.NewContext(f.ctx, auth.ServiceViewer(auth.WebhooksService))
	row, err := f.store.Client.WebhookEvent.Create().SetStripeEventID(ev.ID).SetType(ev.Type).
		SetAPIVersion(stripe.APIVersion).SetCreated(t0).SetLivemode(false).SetPayload(payload).
		SetNextAttemptAt(time.Now()).Save(svc)
	if err != nil {
		t.Fatal(err)
	}
	// While this event is planned (its plan's price read from Stripe, the
	// cache emptied), the other event of the same second is applied; its
	// object names no price, so that its planning reads none.
	f.flushRedis(t)
	other := stripefake.SubscriptionJSON(stripefake.Subscription{ID: "sub_tie", Status: "active",
		Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"}})
	applied := false
	f.hook.after("GET", "/v1/prices", func() {
		f.deliver(t, "evt_tie_a", "customer.subscription.updated", other, t0)
		applied = true
	})
	out, err := f.svc.ApplyEvent(f.ctx, row.ID, ev)
	if !applied {
		t.Fatal("the other event was not applied while this one was planned")
	}
	if err == nil {
		t.Fatalf("applied over a tie it did not plan for: %+v; want an error, so that it is retried", out)
	}
	if out, err := f.svc.ApplyEvent(f.ctx, row.ID, ev); err != nil || out.Status != webhookevent.StatusProcessed {
		t.Fatalf("retry = %+v, %v", out, err)
	}
	sub, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_tie")).Only(f.sys(ws))
	if err != nil || sub.Status != "active" {
		t.Fatalf("subscription = %+v, %v; want Stripe's state (active)", sub, err)
	}
}

// A subscription whose price has a lookup key the catalog cannot hold (a
// Dashboard key like "pro:monthly") is applied without a plan, not
// retried until its attempts run out.
func TestSubscriptionEventWithAKeyTheCatalogCannotHold(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{})
	ws := f.workspace(t, "alice")
	sub := stripefake.SubscriptionJSON(stripefake.Subscription{ID: "sub_colon", Status: "active", PriceID: "price_colon",
		LookupKey: "pro:monthly", Metadata: map[string]string{"workspace_id": ws.String(), "plan": "pro"}})
	if out := f.deliver(t, "evt_colon", "customer.subscription.created", sub, time.Now()); out.Status != webhookevent.StatusProcessed {
		t.Fatalf("outcome = %+v; want processed", out)
	}
	if row, err := f.store.Client.Subscription.Query().Where(subscriptionStripeID("sub_colon")).Only(f.sys(ws)); err != nil || row.Status != "active" {
		t.Fatalf("subscription = %+v, %v", row, err)
	}
}

// A run of events is marked done as a whole; an event of the run that was
// done already (a duplicate delivery applied meanwhile) is reported as a
// duplicate and its change is not applied again, while the others are
// applied and marked processed for their workspaces, a failure's error
// cleared.
func TestRunAppliesOnlyTheEventsNotDoneYet(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			f := newFixture(t, backend.URL(t), billing.Config{})
			alice, bob := f.workspace(t, "alice"), f.workspace(t, "bob")
			t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
			svc := auth.NewContext(f.ctx, auth.ServiceViewer(auth.WebhooksService))
			store := func(id, pi string, ws uuid.UUID, k int) billing.StoredEvent {
				meta := map[string]string{"workspace_id": ws.String(), "purpose": "credits_pack"}
				payload := stripefake.Event(id, "payment_intent.succeeded", stripefake.PaymentIntentJSON(pi, "succeeded", 700, "usd", meta), t0.Add(time.Duration(k)*time.Second))
				ev := decodeEvent(t, payload)
				row, err := f.store.Client.WebhookEvent.Create().SetStripeEventID(id).SetType(ev.Type).SetAPIVersion(stripe.APIVersion).
					SetCreated(t0).SetLivemode(false).SetPayload(payload).SetNextAttemptAt(time.Now()).Save(svc)
				if err != nil {
					t.Fatal(err)
				}
				return billing.StoredEvent{RowID: row.ID, Event: ev}
			}
			run := []billing.StoredEvent{store("evt_run_1", "pi_run_1", alice, 1), store("evt_run_2", "pi_run_2", bob, 2), store("evt_run_3", "pi_run_3", alice, 3)}
			if _, err := f.svc.ApplyEvent(f.ctx, run[1].RowID, run[1].Event); err != nil {
				t.Fatal(err)
			}
			// The payment is changed since: applying its event again would undo that.
			if n, err := f.store.Client.Payment.Update().Where(payment.StripePaymentIntentID("pi_run_2")).SetStatus(payment.StatusRequiresPaymentMethod).Save(f.sys(bob)); err != nil || n != 1 {
				t.Fatalf("changing the payment: %d, %v", n, err)
			}
			// The third failed once already: its error goes when it is done.
			if err := f.store.Client.WebhookEvent.UpdateOneID(run[2].RowID).SetStatus(webhookevent.StatusFailed).SetLastError("boom").Exec(svc); err != nil {
				t.Fatal(err)
			}
			results := f.svc.ApplyEvents(f.ctx, run)
			for i, want := range []uuid.UUID{alice, bob, alice} {
				r := results[i]
				if r.Err != nil || r.Outcome.Status != webhookevent.StatusProcessed || r.Outcome.Duplicate != (i == 1) || r.Outcome.Workspace != want {
					t.Errorf("event %d: %+v, %v; want processed for its workspace, a duplicate only for the second", i+1, r.Outcome, r.Err)
				}
				row := f.eventRow(t, run[i].Event.ID)
				if row.Status != webhookevent.StatusProcessed || row.WorkspaceID == nil || *row.WorkspaceID != want || row.ProcessedAt == nil ||
					row.LockedUntil != nil || row.NextAttemptAt != nil || row.LastError != "" {
					t.Errorf("event %d stored as %+v; want processed for its workspace, neither leased nor due", i+1, row)
				}
			}
			statuses := map[string]payment.Status{}
			for _, ws := range []uuid.UUID{alice, bob} {
				rows, err := f.store.Client.Payment.Query().All(f.sys(ws))
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range rows {
					statuses[*p.StripePaymentIntentID] = p.Status
				}
			}
			want := map[string]payment.Status{"pi_run_1": payment.StatusSucceeded, "pi_run_2": payment.StatusRequiresPaymentMethod, "pi_run_3": payment.StatusSucceeded}
			if fmt.Sprint(statuses) != fmt.Sprint(want) {
				t.Errorf("payments %v, want %v: the duplicate applied once, the others recorded", statuses, want)
			}
		})
	}
}

// A payment or invoice that planning found unrecorded is inserted
// straight away; should it be recorded between planning and the insert
// (our own create call's answer, say), the insert does nothing and the
// event changes the recorded row like any other: one row, the event's
// status. PostgreSQL only: SQLite's one connection cannot record it in
// between.
func TestEventForAnObjectRecordedAfterPlanning(t *testing.T) {
	f := newFixture(t, testenv.Postgres(t), billing.Config{})
	ws := f.workspace(t, "alice")
	meta := map[string]string{"workspace_id": ws.String()}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	// Swapped before recording, as the hook also sees its own insert.
	var paymentFirst, invoiceFirst atomic.Bool
	f.store.Client.Payment.Use(func(next ent.Mutator) ent.Mutator {
		return hook.PaymentFunc(func(ctx context.Context, m *ent.PaymentMutation) (ent.Value, error) {
			if pi, _ := m.StripePaymentIntentID(); m.Op().Is(ent.OpCreate) && pi == "pi_late" {
				if !paymentFirst.Swap(true) {
					_, err := f.store.Client.Payment.Create().SetWorkspaceID(ws).SetStripePaymentIntentID("pi_late").
						SetAmount(700).SetCurrency("usd").SetPurpose("credits_pack").SetCreatedBy("user_1").
						SetStatus(payment.StatusProcessing).Save(f.sys(ws))
					if err != nil {
						t.Errorf("recording the payment meanwhile: %v", err)
					}
				}
			}
			return next.Mutate(ctx, m)
		})
	})
	f.store.Client.Invoice.Use(func(next ent.Mutator) ent.Mutator {
		return hook.InvoiceFunc(func(ctx context.Context, m *ent.InvoiceMutation) (ent.Value, error) {
			if id, _ := m.StripeInvoiceID(); m.Op().Is(ent.OpCreate) && id == "in_late" {
				if !invoiceFirst.Swap(true) {
					_, err := f.store.Client.Invoice.Create().SetWorkspaceID(ws).SetStripeInvoiceID("in_late").
						SetStatus("open").SetAmountDue(1200).SetAmountPaid(0).SetCurrency("usd").SetLastEventAt(t0.Add(-time.Minute)).Save(f.sys(ws))
					if err != nil {
						t.Errorf("recording the invoice meanwhile: %v", err)
					}
				}
			}
			return next.Mutate(ctx, m)
		})
	})

	out := f.deliver(t, "evt_pi_late", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_late", "succeeded", 700, "usd", meta), t0)
	if out.Status != webhookevent.StatusProcessed || out.Duplicate {
		t.Fatalf("payment event: %+v; want processed", out)
	}
	payments, err := f.store.Client.Payment.Query().Where(payment.StripePaymentIntentID("pi_late")).All(f.sys(ws))
	if err != nil || len(payments) != 1 || payments[0].Status != payment.StatusSucceeded || payments[0].CreatedBy != "user_1" {
		t.Fatalf("payments %+v, %v; want the one recorded meanwhile, succeeded", payments, err)
	}

	out = f.deliver(t, "evt_in_late", "invoice.paid", stripefake.InvoiceJSON("in_late", "cus_x", "", "paid", 1200, 1200, meta), t0)
	if out.Status != webhookevent.StatusProcessed || out.Duplicate {
		t.Fatalf("invoice event: %+v; want processed", out)
	}
	invoices, err := f.store.Client.Invoice.Query().Where(invoice.StripeInvoiceID("in_late")).All(f.sys(ws))
	if err != nil || len(invoices) != 1 || invoices[0].Status != "paid" || invoices[0].AmountPaid != 1200 {
		t.Fatalf("invoices %+v, %v; want the one recorded meanwhile, paid", invoices, err)
	}
}

// DecodeEvent decodes a stored payload once: whether its type batches
// (eventHandlers, where "x.*" covers the types under x but not x itself)
// and what decides its lane (its object, and the PaymentIntent that
// object belongs to, by id or expanded), for handled, unhandled and
// undecodable objects alike. A payload that is not a Stripe event is
// refused.
func TestDecodeEvent(t *testing.T) {
	charge := `{"id":"ch_1","object":"charge","payment_intent":"pi_1"}`
	for _, c := range []struct {
		name, typ, object       string
		batch                   bool
		objectID, paymentIntent string
	}{
		{"PaymentIntentEventsBatch", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_1", "succeeded", 100, "usd", nil), true, "pi_1", ""},
		{"InvoiceEventsBatchAndNameTheirPaymentIntent", "invoice.paid", `{"id":"in_1","object":"invoice","payment_intent":"pi_1"}`, true, "in_1", "pi_1"},
		{"SubscriptionEventsBatch", "customer.subscription.updated", `{"id":"sub_1","object":"subscription"}`, true, "sub_1", ""},
		{"ChargeEventsRunAlone", "charge.refunded", charge, false, "ch_1", "pi_1"},
		{"AnExpandedPaymentIntentIsNamedByItsID", "refund.updated", `{"id":"re_1","object":"refund","payment_intent":{"id":"pi_1","object":"payment_intent"}}`, false, "re_1", "pi_1"},
		{"CheckoutSessionsNameTheirPaymentIntent", "checkout.session.completed", `{"id":"cs_1","object":"checkout.session","payment_intent":"pi_1"}`, false, "cs_1", "pi_1"},
		{"AWildcardCoversOnlyTheTypesUnderIt", "customer.subscription", `{"id":"sub_1","object":"subscription"}`, false, "sub_1", ""},
		{"AnUnhandledTypeKeepsItsLane", "charge.succeeded", charge, false, "ch_1", "pi_1"},
		{"AnUndecodableObjectKeepsItsLane", "payment_intent.succeeded", `{"id":"pi_1","amount":"lots"}`, true, "pi_1", ""},
		{"ANullObjectNamesNothing", "invoice.paid", `null`, true, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := decodeEvent(t, stripefake.Event("evt_1", c.typ, c.object, time.Unix(1700000000, 0)))
			if ev.ID != "evt_1" || ev.Type != c.typ || !ev.Created.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("envelope: %q %q %v", ev.ID, ev.Type, ev.Created)
			}
			if ev.Batchable() != c.batch || ev.ObjectID() != c.objectID || ev.PaymentIntent() != c.paymentIntent {
				t.Errorf("batchable %v, object %q, PaymentIntent %q; want %v, %q, %q",
					ev.Batchable(), ev.ObjectID(), ev.PaymentIntent(), c.batch, c.objectID, c.paymentIntent)
			}
		})
	}
	t.Run("RefusesWhatIsNotAnEvent", func(t *testing.T) {
		for _, payload := range []string{
			`not json`,
			`[]`,
			`{"id":"evt_1","type":"payment_intent.succeeded","created":"yesterday"}`,
			`{"id":"evt_1","type":"payment_intent.succeeded","data":{}}`,
			`{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":["pi_1"]}}`,
			`{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":"pi_1"}}`,
			`{"id":"evt_1","type":"payment_intent.updated","data":{"object":{"id":"pi_1"},"previous_attributes":"x"}}`,
			`{"id":"evt_1","type":"payment_intent.succeeded","request":"req_1","data":{"object":{"id":"pi_1"}}}`,
		} {
			if ev, err := billing.DecodeEvent([]byte(payload)); err == nil {
				t.Errorf("DecodeEvent(%s) = %+v; want an error", payload, ev)
			}
		}
	})
}

// An event that cannot apply is stored as skipped with the reason: no
// object, an unhandled type, an object its handler cannot decode, an
// invoice without an id (a preview), a catalog event (whose only work is
// the price cache's).
func TestEventsSkippedWithTheirReason(t *testing.T) {
	f := newFixture(t, testenv.SQLite(t), billing.Config{})
	svc := auth.NewContext(f.ctx, auth.ServiceViewer(auth.WebhooksService))
	apply := func(t *testing.T, eventID, eventType string, payload []byte) billing.EventOutcome {
		t.Helper()
		row, err := f.store.Client.WebhookEvent.Create().SetStripeEventID(eventID).SetType(eventType).
			SetAPIVersion(stripe.APIVersion).SetCreated(time.Now()).SetLivemode(false).SetPayload(payload).
			SetNextAttemptAt(time.Now()).Save(svc)
		if err != nil {
			t.Fatal(err)
		}
		out, err := f.svc.ApplyEvent(f.ctx, row.ID, decodeEvent(t, payload))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, c := range []struct {
		name, typ, object, reason string
	}{
		{"UnhandledType", "charge.succeeded", `{"id":"ch_1","object":"charge"}`, "unhandled event type charge.succeeded"},
		{"UndecodableObject", "payment_intent.succeeded", `{"id":"pi_1","amount":"lots"}`, "undecodable payment intent"},
		{"InvoicePreview", "invoice.upcoming", `{"object":"invoice"}`, "invoice without an id"},
		{"CatalogEvent", "price.updated", `{"id":"price_1","object":"price","lookup_key":"team_monthly"}`, "catalog event: price cache invalidated, no workspace state"},
		{"NoWorkspace", "customer.deleted", `{"id":"cus_nobody","object":"customer"}`, `no workspace for this object (metadata.workspace_id "", customer "cus_nobody")`},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "evt_skip_" + c.name
			out := apply(t, id, c.typ, stripefake.Event(id, c.typ, c.object, time.Now()))
			if out.Status != webhookevent.StatusSkipped || out.Reason != c.reason || out.Duplicate {
				t.Errorf("outcome %+v; want skipped for %q", out, c.reason)
			}
		})
	}
	t.Run("NoObject", func(t *testing.T) {
		out := apply(t, "evt_skip_no_object", "payment_intent.succeeded", []byte(`{"id":"evt_skip_no_object","type":"payment_intent.succeeded","created":1700000000}`))
		if out.Status != webhookevent.StatusSkipped || out.Reason != "event has no object" {
			t.Errorf("outcome %+v; want skipped, for having no object", out)
		}
	})
}
