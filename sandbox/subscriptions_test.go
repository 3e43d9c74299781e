package sandbox

import (
	"slices"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func TestSubscriptionCreate(t *testing.T) {
	paidFirst := []string{"customer.subscription.created", "invoice.created", "payment_intent.created", "invoice.finalized",
		"charge.succeeded", "payment_intent.succeeded", "invoice.paid", "invoice.payment_succeeded", "customer.subscription.updated"}
	cases := []struct {
		name, token, behaviour string
		trialDays              int64
		status                 stripe.SubscriptionStatus
		invoice                stripe.InvoiceStatus
		amountDue              int64
		events                 []string
	}{
		{"ChargedAtOnceWithTheDefaultCard", "pm_card_visa", "allow_incomplete", 0, "active", "paid", 1000, paidFirst},
		{"ChargedAtOnceByDefault", "pm_card_visa", "", 0, "active", "paid", 1000, paidFirst},
		{"ErrorIfIncompleteChargesToo", "pm_card_visa", "error_if_incomplete", 0, "active", "paid", 1000, paidFirst},
		{"DefaultIncompleteWaitsForTheClient", "", "default_incomplete", 0, "incomplete", "open", 1000,
			[]string{"customer.subscription.created", "invoice.created", "payment_intent.created", "invoice.finalized"}},
		{"DeclinedWithAllowIncompleteStaysIncomplete", "pm_card_chargeCustomerFail", "allow_incomplete", 0, "incomplete", "open", 1000,
			[]string{"customer.subscription.created", "invoice.created", "payment_intent.created", "invoice.finalized",
				"charge.failed", "payment_intent.payment_failed", "invoice.payment_failed"}},
		{"TrialStartsTrialingWithAPaidZeroInvoice", "", "default_incomplete", 14, "trialing", "paid", 0,
			[]string{"setup_intent.created", "customer.subscription.created", "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t)
			pl := b.plans(t)
			cus, _ := b.customer(t, tc.token, "")
			n := len(b.delivered(t))
			p := &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic),
				PaymentSettings: &stripe.SubscriptionPaymentSettingsParams{SaveDefaultPaymentMethod: stripe.String("on_subscription")}}
			if tc.behaviour != "" {
				p.PaymentBehavior = stripe.String(tc.behaviour)
			}
			if tc.trialDays > 0 {
				p.TrialPeriodDays = stripe.Int64(tc.trialDays)
			}
			p.AddExpand("latest_invoice.payment_intent")
			sub, err := b.sc.Subscriptions.New(p)
			if err != nil {
				t.Fatal(err)
			}
			shaped(t, "subscription", sub.LastResponse.RawJSON)
			if sub.Status != tc.status || sub.LatestInvoice.Status != tc.invoice || sub.LatestInvoice.AmountDue != tc.amountDue {
				t.Fatalf("status %s, invoice %s due %d; want %s, %s, %d", sub.Status, sub.LatestInvoice.Status,
					sub.LatestInvoice.AmountDue, tc.status, tc.invoice, tc.amountDue)
			}
			if sub.LatestInvoice.BillingReason != "subscription_create" || sub.Items.Data[0].Price.ID != pl.basic ||
				sub.Items.Data[0].Quantity != 1 || sub.CurrentPeriodEnd <= sub.CurrentPeriodStart {
				t.Fatalf("subscription %+v", sub)
			}
			if tc.trialDays > 0 && sub.TrialEnd-sub.TrialStart != tc.trialDays*86400 {
				t.Fatalf("trial from %d to %d", sub.TrialStart, sub.TrialEnd)
			}
			if tc.behaviour == "default_incomplete" && tc.trialDays == 0 &&
				(sub.LatestInvoice.PaymentIntent == nil || sub.LatestInvoice.PaymentIntent.ClientSecret == "" ||
					sub.LatestInvoice.PaymentIntent.Status != "requires_payment_method") {
				t.Fatalf("the first invoice's PaymentIntent is %+v, want one for the client to confirm", sub.LatestInvoice.PaymentIntent)
			}
			shaped(t, "invoice", b.invoice(t, sub.LatestInvoice.ID).LastResponse.RawJSON)
			eventsAre(t, b.since(t, n), tc.events...)
			b.recv.mu.Lock()
			defer b.recv.mu.Unlock()
			for _, ev := range b.recv.events {
				if ev.Type == "customer.subscription.created" && ev.Data.Object["latest_invoice"] != sub.LatestInvoice.ID {
					t.Fatalf("customer.subscription.created names latest_invoice %v, want %s", ev.Data.Object["latest_invoice"], sub.LatestInvoice.ID)
				}
			}
		})
	}

	t.Run("ErrorIfIncompleteDeclineAnswers402AndCreatesNothing", func(t *testing.T) {
		b := newBox(t)
		pl := b.plans(t)
		cus, _ := b.customer(t, "pm_card_chargeCustomerFail", "")
		n := len(b.delivered(t))
		_, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic),
			PaymentBehavior: stripe.String("error_if_incomplete")})
		if se := stripeErrStatus(t, err, 402); se.Type != stripe.ErrorTypeCard {
			t.Fatalf("error %+v", se)
		}
		if it := b.sc.Subscriptions.List(&stripe.SubscriptionListParams{Customer: stripe.String(cus), Status: stripe.String("all")}); it.Next() {
			t.Fatalf("a subscription was created: %s", it.Subscription().ID)
		}
		eventsAre(t, b.since(t, n))
	})

	t.Run("DefaultIncompleteTurnsActiveWhenItsIntentSucceeds", func(t *testing.T) {
		b := newBox(t)
		pl := b.plans(t)
		cus, _ := b.customer(t, "", "")
		p := &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic), PaymentBehavior: stripe.String("default_incomplete"),
			PaymentSettings: &stripe.SubscriptionPaymentSettingsParams{SaveDefaultPaymentMethod: stripe.String("on_subscription")}}
		p.AddExpand("latest_invoice.payment_intent")
		sub, err := b.sc.Subscriptions.New(p)
		if err != nil {
			t.Fatal(err)
		}
		n := len(b.delivered(t))
		// What POST /v1/payment_intents/{id}/confirm does with a new card.
		err = b.locked(func(c *call) error {
			pm := b.newCardPaymentMethod(cardVisa, "")
			if e := b.confirmIntent(c, b.get("payment_intent", sub.LatestInvoice.PaymentIntent.ID), pm, false); e != nil {
				return e
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got := b.sub(t, sub.ID)
		if got.Status != "active" || got.LatestInvoice.Status != "paid" || got.DefaultPaymentMethod == nil {
			t.Fatalf("after the client confirmed: %s, invoice %s, default payment method %v", got.Status, got.LatestInvoice.Status, got.DefaultPaymentMethod)
		}
		eventsAre(t, b.since(t, n), "charge.succeeded", "payment_method.attached", "payment_intent.succeeded",
			"invoice.paid", "invoice.payment_succeeded", "customer.subscription.updated")
	})

	t.Run("IncompleteExpiresAfter23Hours", func(t *testing.T) {
		b := newBox(t)
		pl := b.plans(t)
		cus, _ := b.customer(t, "", "")
		sub, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic),
			PaymentBehavior: stripe.String("default_incomplete")})
		if err != nil {
			t.Fatal(err)
		}
		b.Advance(22 * 3600e9)
		if got := b.sub(t, sub.ID); got.Status != "incomplete" {
			t.Fatalf("after 22 hours: %s", got.Status)
		}
		n := len(b.delivered(t))
		b.Advance(2 * 3600e9)
		got := b.sub(t, sub.ID)
		if got.Status != "incomplete_expired" || got.LatestInvoice.Status != "void" {
			t.Fatalf("after 24 hours: %s, invoice %s", got.Status, got.LatestInvoice.Status)
		}
		eventsAre(t, b.since(t, n), "payment_intent.canceled", "invoice.voided", "customer.subscription.updated")
	})

	t.Run("IsIdempotent", func(t *testing.T) {
		b := newBox(t)
		pl := b.plans(t)
		cus, _ := b.customer(t, "pm_card_visa", "")
		p := &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic)}
		p.SetIdempotencyKey("sub-create-1")
		first, err := b.sc.Subscriptions.New(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.sc.Subscriptions.New(p)
		if err != nil || again.ID != first.ID || again.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %v, %v", again, err)
		}
		n := 0
		for it := b.sc.Invoices.List(&stripe.InvoiceListParams{Customer: stripe.String(cus)}); it.Next(); n++ {
		}
		if n != 1 {
			t.Fatalf("%d invoices, want 1", n)
		}
	})
}

func TestSubscriptionValidation(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	bare, _ := b.customer(t, "", "")
	anchor := stripe.Int64(1900000000)
	cases := []struct {
		name   string
		p      *stripe.SubscriptionParams
		status int
		param  string
	}{
		{"UnknownPrice", &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items("price_nope")}, 404, "items[0][price]"},
		{"PriceWithoutRecurring", &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.oneTime)}, 400, "items[0][price]"},
		{"SamePriceTwice", &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic, pl.basic)}, 400, "items[1][price]"},
		{"MixedIntervals", &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic, pl.yearly)}, 400, "items[1][price]"},
		{"UnknownCustomer", &stripe.SubscriptionParams{Customer: stripe.String("cus_nope"), Items: items(pl.basic)}, 404, "customer"},
		{"NoPaymentMethodToCharge", &stripe.SubscriptionParams{Customer: stripe.String(bare), Items: items(pl.basic)}, 400, ""},
		{"CouponAndPromotionCodeTogether", &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic),
			Coupon: stripe.String("x"), PromotionCode: stripe.String("promo_x")}, 400, "promotion_code"},
		{"BillingCycleAnchorIsRefusedByName", &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic),
			BillingCycleAnchor: anchor}, 501, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.sc.Subscriptions.New(tc.p)
			se := stripeErrStatus(t, err, tc.status)
			if se.Param != tc.param {
				t.Fatalf("param %q, want %q (%s)", se.Param, tc.param, se.Msg)
			}
		})
	}
	if it := b.sc.Subscriptions.List(&stripe.SubscriptionListParams{Status: stripe.String("all")}); it.Next() {
		t.Fatalf("a refused request created %s", it.Subscription().ID)
	}
}

func TestSubscriptionUpdatesAndLists(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	other, _ := b.customer(t, "pm_card_visa", "")

	t.Run("TrialEndNowEndsTheTrialAndInvoices", func(t *testing.T) {
		sub, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic), TrialPeriodDays: stripe.Int64(30)})
		if err != nil {
			t.Fatal(err)
		}
		n := len(b.delivered(t))
		p := &stripe.SubscriptionParams{TrialEndNow: stripe.Bool(true)}
		p.AddExpand("latest_invoice")
		got, err := b.sc.Subscriptions.Update(sub.ID, p)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != "active" || got.LatestInvoice.AmountPaid != 1000 || got.LatestInvoice.BillingReason != "subscription_update" ||
			got.CurrentPeriodEnd-got.CurrentPeriodStart < 28*86400 {
			t.Fatalf("trial ended now: %s, invoice paid %d %s, period %d-%d", got.Status, got.LatestInvoice.AmountPaid,
				got.LatestInvoice.BillingReason, got.CurrentPeriodStart, got.CurrentPeriodEnd)
		}
		eventsAre(t, only(b.since(t, n), billingEvents...), "customer.subscription.updated", "invoice.created", "invoice.finalized",
			"invoice.paid", "invoice.payment_succeeded")
	})
	t.Run("AThreeDSecureCardLeavesTheFirstInvoiceWaitingForAction", func(t *testing.T) {
		c3, _ := b.customer(t, "pm_card_authenticationRequired", "")
		p := &stripe.SubscriptionParams{Customer: stripe.String(c3), Items: items(pl.basic)}
		p.AddExpand("latest_invoice.payment_intent")
		sub, err := b.sc.Subscriptions.New(p)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Status != "incomplete" || sub.LatestInvoice.PaymentIntent.Status != "requires_action" {
			t.Fatalf("%s with intent %s", sub.Status, sub.LatestInvoice.PaymentIntent.Status)
		}
	})
	t.Run("ListFiltersByCustomerStatusAndPrice", func(t *testing.T) {
		a, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(other), Items: items(pl.basic)})
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(other), Items: items(pl.pro)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.sc.Subscriptions.Cancel(c.ID, nil); err != nil {
			t.Fatal(err)
		}
		ids := func(p *stripe.SubscriptionListParams) []string {
			var out []string
			for it := b.sc.Subscriptions.List(p); it.Next(); {
				out = append(out, it.Subscription().ID)
			}
			return out
		}
		eventsAre(t, ids(&stripe.SubscriptionListParams{Customer: stripe.String(other)}), a.ID)
		eventsAre(t, ids(&stripe.SubscriptionListParams{Customer: stripe.String(other), Status: stripe.String("all")}), c.ID, a.ID)
		eventsAre(t, ids(&stripe.SubscriptionListParams{Customer: stripe.String(other), Status: stripe.String("canceled")}), c.ID)
		eventsAre(t, ids(&stripe.SubscriptionListParams{Customer: stripe.String(other), Price: stripe.String(pl.basic)}), a.ID)
	})
	t.Run("AddingAndDeletingItems", func(t *testing.T) {
		sub := b.subscribe(t, cus, pl.pro)
		got, err := b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{ProrationBehavior: stripe.String("none"),
			Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String(pl.seat), Quantity: stripe.Int64(4)}}})
		if err != nil || len(got.Items.Data) != 2 || got.Items.Data[1].Quantity != 4 {
			t.Fatalf("added an item: %v", err)
		}
		_, err = b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String(pl.seat)}}})
		stripeErrStatus(t, err, 400) // the same price twice
		got, err = b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{ProrationBehavior: stripe.String("none"),
			Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(got.Items.Data[0].ID), Deleted: stripe.Bool(true)}}})
		if err != nil || len(got.Items.Data) != 1 || got.Items.Data[0].Price.ID != pl.seat {
			t.Fatalf("deleted an item: %v", err)
		}
		_, err = b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(got.Items.Data[0].ID), Price: stripe.String(pl.yearly)}}})
		stripeErrStatus(t, err, 501) // another interval
	})
}

// The contract Checkout and the portal build on (contract.go).
func TestContractForCheckoutAndPortal(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	t.Run("StartSubscriptionOnSessionWithA3DSCardWaitsForAction", func(t *testing.T) {
		cus, pm := b.customer(t, "pm_card_authenticationRequired", "")
		var sub object
		err := b.locked(func(c *call) error {
			s, e := b.startSubscription(c, subscriptionSpec{Customer: cus, Items: []itemSpec{{Price: pl.basic, Quantity: 2}},
				DefaultPaymentMethod: pm, OnSession: true, Metadata: map[string]any{"workspace": "w1"}})
			if e != nil {
				return e
			}
			sub = s
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got := b.sub(t, str(sub["id"]))
		if got.Status != "incomplete" || got.Metadata["workspace"] != "w1" || got.Items.Data[0].Quantity != 2 || got.DefaultPaymentMethod.ID != pm {
			t.Fatalf("started: %+v", got)
		}
		shaped(t, "subscription", sub)
	})
	t.Run("SetCancelAtPeriodEndEmitsOneUpdate", func(t *testing.T) {
		cus, _ := b.customer(t, "pm_card_visa", "")
		sub := b.subscribe(t, cus, pl.basic)
		n := len(b.delivered(t))
		err := b.locked(func(c *call) error {
			if e := b.setCancelAtPeriodEnd(c, b.get("subscription", sub.ID), true); e != nil {
				return e
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.sub(t, sub.ID); !got.CancelAtPeriodEnd || got.CanceledAt == 0 {
			t.Fatalf("scheduled: %+v", got)
		}
		eventsAre(t, b.since(t, n), "customer.subscription.updated")
	})
	t.Run("ResumeIsRefusedByName", func(t *testing.T) {
		_, err := b.sc.Subscriptions.Resume("sub_x", nil)
		stripeErrStatus(t, err, 501)
	})
}

func TestTrialWithoutACardGetsAPendingSetupIntent(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	clock, _ := b.clock(t)
	cus, _ := b.customer(t, "", clock)
	p := &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic), TrialPeriodDays: stripe.Int64(7),
		PaymentBehavior: stripe.String("default_incomplete"),
		PaymentSettings: &stripe.SubscriptionPaymentSettingsParams{SaveDefaultPaymentMethod: stripe.String("on_subscription")}}
	p.AddExpand("pending_setup_intent")
	sub, err := b.sc.Subscriptions.New(p)
	if err != nil {
		t.Fatal(err)
	}
	si := sub.PendingSetupIntent
	if si == nil || si.ClientSecret == "" || si.Status != "requires_payment_method" || si.Usage != "off_session" {
		t.Fatalf("pending_setup_intent %+v", si)
	}
	shaped(t, "setup_intent", b.get("setup_intent", si.ID))
	// What confirming the SetupIntent with a card does (the payments family).
	var pm string
	err = b.locked(func(c *call) error {
		card, e := b.attachPaymentMethod(c, "pm_card_visa", cus)
		if e != nil {
			return e
		}
		pm = str(card["id"])
		o := b.get("setup_intent", si.ID)
		o["status"], o["payment_method"] = "succeeded", pm
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.advanceClock(t, clock, sub.TrialEnd+draftHour+60)
	got := b.sub(t, sub.ID)
	if got.Status != "active" || got.LatestInvoice.Status != "paid" || got.DefaultPaymentMethod == nil ||
		got.DefaultPaymentMethod.ID != pm || got.PendingSetupIntent != nil {
		t.Fatalf("after the trial: %s, invoice %s, default %v, pending %v", got.Status, got.LatestInvoice.Status, got.DefaultPaymentMethod, got.PendingSetupIntent)
	}
}

// A plan change invoiced at once is paid on-session unless off_session is
// set, so a card that asks for 3D Secure leaves the invoice waiting for the
// customer (and the subscription past_due until it is paid), as Stripe's
// update does; default_incomplete leaves the payment to the client.
func TestPlanChangeInvoicedAtOncePaysOnSession(t *testing.T) {
	cases := []struct {
		name       string
		offSession bool
		behavior   string
		intent     stripe.PaymentIntentStatus
		event      string
	}{
		{"ThreeDSecureWaitsForTheCustomer", false, "", stripe.PaymentIntentStatusRequiresAction, "invoice.payment_action_required"},
		{"OffSessionThreeDSecureIsDeclined", true, "", stripe.PaymentIntentStatusRequiresPaymentMethod, "invoice.payment_failed"},
		{"DefaultIncompleteLeavesItToTheClient", false, "default_incomplete", stripe.PaymentIntentStatusRequiresPaymentMethod, "invoice.finalized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t)
			pl := b.plans(t)
			cus, _ := b.customer(t, "pm_card_visa", "")
			sub, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic)})
			if err != nil || sub.Status != stripe.SubscriptionStatusActive {
				t.Fatalf("subscribe: %v %v", sub, err)
			}
			threeDS, err := b.sc.PaymentMethods.Attach("pm_card_authenticationRequired", &stripe.PaymentMethodAttachParams{Customer: stripe.String(cus)})
			if err != nil {
				t.Fatal(err)
			}
			n := len(b.delivered(t))
			p := &stripe.SubscriptionParams{
				Items:                []*stripe.SubscriptionItemsParams{{ID: stripe.String(sub.Items.Data[0].ID), Price: stripe.String(pl.pro)}},
				ProrationBehavior:    stripe.String("always_invoice"),
				DefaultPaymentMethod: stripe.String(threeDS.ID),
			}
			if tc.offSession {
				p.OffSession = stripe.Bool(true)
			}
			if tc.behavior != "" {
				p.PaymentBehavior = stripe.String(tc.behavior)
			}
			p.AddExpand("latest_invoice.payment_intent")
			got, err := b.sc.Subscriptions.Update(sub.ID, p)
			if err != nil {
				t.Fatal(err)
			}
			inv := got.LatestInvoice
			if got.Status != stripe.SubscriptionStatusPastDue || inv.Status != stripe.InvoiceStatusOpen || inv.PaymentIntent.Status != tc.intent {
				t.Fatalf("after the change: subscription %s, invoice %s, intent %s; want past_due, open, %s",
					got.Status, inv.Status, inv.PaymentIntent.Status, tc.intent)
			}
			events := b.since(t, n)
			if !slices.Contains(events, tc.event) || !slices.Contains(events, "customer.subscription.updated") {
				t.Fatalf("events %v; want %s and the subscription's update", events, tc.event)
			}
		})
	}
}
