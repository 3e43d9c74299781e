package sandbox

import (
	"math"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// prorated is Stripe's proration of an amount for the part of the period
// left after at, to the second.
func prorated(amount, at, start, end int64) int64 {
	return int64(math.Round(float64(amount) * float64(end-at) / float64(end-start)))
}

func TestProrations(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	start := func(t *testing.T, price string, qty int64) *stripe.Subscription {
		sub, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus),
			Items: []*stripe.SubscriptionItemsParams{{Price: stripe.String(price), Quantity: stripe.Int64(qty)}}})
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	change := func(t *testing.T, sub *stripe.Subscription, price string, qty int64, behaviour string, at int64) *stripe.Subscription {
		p := &stripe.SubscriptionParams{ProrationBehavior: stripe.String(behaviour), ProrationDate: stripe.Int64(at),
			Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(sub.Items.Data[0].ID), Price: stripe.String(price), Quantity: stripe.Int64(qty)}}}
		p.AddExpand("latest_invoice")
		got, err := b.sc.Subscriptions.Update(sub.ID, p)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	upcoming := func(t *testing.T, sub string) *stripe.Invoice {
		inv, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String(sub)})
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	prorationSum := func(inv *stripe.Invoice) (credit, debit int64) {
		for _, l := range inv.Lines.Data {
			switch {
			case l.Proration && l.Amount < 0:
				credit += l.Amount
			case l.Proration:
				debit += l.Amount
			}
		}
		return
	}

	cases := []struct {
		name              string
		from, to          string
		fromQty, toQty    int64
		fromUnit, toUnit  int64
		behaviour         string
		invoicedAtOnce    bool
		pendingProrations bool
		nextPeriodAmount  int64
	}{
		{"UpgradeMidPeriodCreatesPendingProrations", pl.basic, pl.pro, 1, 1, 1000, 3000, "create_prorations", false, true, 3000},
		{"MoreSeatsProrateTheQuantity", pl.seat, pl.seat, 1, 3, 500, 1500, "create_prorations", false, true, 1500},
		{"AlwaysInvoiceChargesTheProrationsNow", pl.basic, pl.pro, 1, 1, 1000, 3000, "always_invoice", true, false, 3000},
		{"NoneChangesThePlanWithoutProrations", pl.basic, pl.pro, 1, 1, 1000, 3000, "none", false, false, 3000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub := start(t, tc.from, tc.fromQty)
			at := sub.CurrentPeriodStart + 10*86400
			n := len(b.delivered(t))
			got := change(t, sub, tc.to, tc.toQty, tc.behaviour, at)
			shaped(t, "subscription", got.LastResponse.RawJSON)
			if got.Items.Data[0].Price.ID != tc.to || got.Items.Data[0].Quantity != tc.toQty || got.Items.Data[0].ID != sub.Items.Data[0].ID {
				t.Fatalf("items after the change: %+v", got.Items.Data[0])
			}
			wantCredit := -prorated(tc.fromUnit, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd)
			wantDebit := prorated(tc.toUnit, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd)
			if tc.invoicedAtOnce {
				inv := got.LatestInvoice
				if inv.ID == sub.LatestInvoice.ID || inv.BillingReason != "subscription_update" || inv.Status != "paid" ||
					inv.AmountPaid != wantCredit+wantDebit {
					t.Fatalf("always_invoice: invoice %s %s %s paid %d, want %d", inv.ID, inv.BillingReason, inv.Status, inv.AmountPaid, wantCredit+wantDebit)
				}
				credit, debit := prorationSum(b.invoice(t, inv.ID))
				if credit != wantCredit || debit != wantDebit {
					t.Fatalf("invoice prorations %d/%d, want %d/%d", credit, debit, wantCredit, wantDebit)
				}
				eventsAre(t, only(b.since(t, n), billingEvents...), "customer.subscription.updated", "invoice.created",
					"invoice.finalized", "invoice.paid", "invoice.payment_succeeded")
			} else {
				if got.LatestInvoice.ID != sub.LatestInvoice.ID {
					t.Fatalf("%s invoiced at once (%s)", tc.behaviour, got.LatestInvoice.ID)
				}
				eventsAre(t, only(b.since(t, n), billingEvents...), "customer.subscription.updated")
			}
			up := upcoming(t, sub.ID)
			shaped(t, "invoice", up.LastResponse.RawJSON)
			credit, debit := prorationSum(up)
			if !tc.pendingProrations {
				wantCredit, wantDebit = 0, 0
			}
			if credit != wantCredit || debit != wantDebit || up.AmountDue != tc.nextPeriodAmount+wantCredit+wantDebit ||
				up.PeriodEnd != sub.CurrentPeriodEnd || up.NextPaymentAttempt != sub.CurrentPeriodEnd {
				t.Fatalf("upcoming: prorations %d/%d (want %d/%d), due %d (want %d), period end %d", credit, debit, wantCredit, wantDebit,
					up.AmountDue, tc.nextPeriodAmount+wantCredit+wantDebit, up.PeriodEnd)
			}
			b.sc.Subscriptions.Cancel(sub.ID, nil)
		})
	}

	t.Run("PendingProrationsAreOnTheRenewalInvoice", func(t *testing.T) {
		b := newBox(t)
		pl := b.plans(t)
		cus, _ := b.customer(t, "pm_card_visa", "")
		sub := b.subscribe(t, cus, pl.basic)
		at := sub.CurrentPeriodStart + 5*86400
		if _, err := b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{ProrationDate: stripe.Int64(at),
			Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(sub.Items.Data[0].ID), Price: stripe.String(pl.pro)}}}); err != nil {
			t.Fatal(err)
		}
		want := 3000 + prorated(3000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd) - prorated(1000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd)
		b.Advance(time.Duration(sub.CurrentPeriodEnd-sub.CurrentPeriodStart+draftHour+60) * time.Second)
		got := b.sub(t, sub.ID)
		if got.LatestInvoice.BillingReason != "subscription_cycle" || got.LatestInvoice.AmountPaid != want || len(got.LatestInvoice.Lines.Data) != 3 {
			t.Fatalf("renewal invoice: %s paid %d (want %d), %d lines", got.LatestInvoice.BillingReason, got.LatestInvoice.AmountPaid, want, len(got.LatestInvoice.Lines.Data))
		}
		if up, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String(sub.ID)}); err != nil || up.AmountDue != 3000 {
			t.Fatalf("after the renewal the prorations are still pending: %v, %v", up, err)
		}
	})
}

func TestUpcomingInvoice(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	sub := b.subscribe(t, cus, pl.basic)
	at := sub.CurrentPeriodStart + 7*86400
	preview := []*stripe.SubscriptionItemsParams{{ID: stripe.String(sub.Items.Data[0].ID), Price: stripe.String(pl.pro), Quantity: stripe.Int64(2)}}
	wantProration := prorated(6000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd) - prorated(1000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd)

	t.Run("NextRenewalForTheCustomer", func(t *testing.T) {
		up, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Customer: stripe.String(cus)})
		if err != nil {
			t.Fatal(err)
		}
		if up.AmountDue != 1000 || up.Subscription.ID != sub.ID || len(up.Lines.Data) != 1 || up.Lines.Data[0].Period.Start != sub.CurrentPeriodEnd {
			t.Fatalf("upcoming: %d for %v, %d lines", up.AmountDue, up.Subscription, len(up.Lines.Data))
		}
	})
	t.Run("PreviewsAPlanChangeWithoutMakingIt", func(t *testing.T) {
		up, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Customer: stripe.String(cus), Subscription: stripe.String(sub.ID),
			SubscriptionItems: preview, SubscriptionProrationBehavior: stripe.String("create_prorations"), SubscriptionProrationDate: stripe.Int64(at)})
		if err != nil {
			t.Fatal(err)
		}
		var prorations int64
		for _, l := range up.Lines.Data {
			if l.Proration {
				prorations += l.Amount
			}
		}
		if prorations != wantProration || up.AmountDue != 6000+wantProration {
			t.Fatalf("preview: prorations %d (want %d), due %d", prorations, wantProration, up.AmountDue)
		}
		if got := b.sub(t, sub.ID); got.Items.Data[0].Price.ID != pl.basic {
			t.Fatal("the preview changed the subscription")
		}
	})
	t.Run("LinesListsTheSameLines", func(t *testing.T) {
		it := b.sc.Invoices.UpcomingLines(&stripe.InvoiceUpcomingLinesParams{Customer: stripe.String(cus), Subscription: stripe.String(sub.ID),
			SubscriptionItems:             []*stripe.InvoiceUpcomingLinesSubscriptionItemParams{{ID: preview[0].ID, Price: preview[0].Price, Quantity: preview[0].Quantity}},
			SubscriptionProrationBehavior: stripe.String("create_prorations"), SubscriptionProrationDate: stripe.Int64(at),
			ListParams: stripe.ListParams{Limit: stripe.Int64(1)}})
		var sum int64
		var lines int
		for it.Next() {
			sum += it.InvoiceLineItem().Amount
			lines++
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if lines != 3 || sum != 6000+wantProration {
			t.Fatalf("%d lines summing to %d, want 3 summing to %d", lines, sum, 6000+wantProration)
		}
	})
	t.Run("NoneWhenCancelingAtPeriodEnd", func(t *testing.T) {
		if _, err := b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}); err != nil {
			t.Fatal(err)
		}
		_, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Customer: stripe.String(cus)})
		if se := stripeErrStatus(t, err, 404); se.Code != stripe.ErrorCodeInvoiceUpcomingNone {
			t.Fatalf("code %s", se.Code)
		}
	})
}

func TestInvoiceEndpoints(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_chargeCustomerFail", "")
	sub := b.subscribe(t, cus, pl.basic)
	t.Run("ListFiltersByStatusAndSubscription", func(t *testing.T) {
		it := b.sc.Invoices.List(&stripe.InvoiceListParams{Subscription: stripe.String(sub.ID), Status: stripe.String("open")})
		if !it.Next() || it.Invoice().ID != sub.LatestInvoice.ID || it.Next() {
			t.Fatal("the open invoice is not listed alone")
		}
		if it := b.sc.Invoices.List(&stripe.InvoiceListParams{Customer: stripe.String(cus), Status: stripe.String("paid")}); it.Next() {
			t.Fatal("a paid invoice is listed")
		}
	})
	t.Run("PayWithADecliningCardAnswers402", func(t *testing.T) {
		_, err := b.sc.Invoices.Pay(sub.LatestInvoice.ID, nil)
		stripeErrStatus(t, err, 402)
		if inv := b.invoice(t, sub.LatestInvoice.ID); inv.Status != "open" || inv.AttemptCount != 2 {
			t.Fatalf("after a declined pay: %s, %d attempts", inv.Status, inv.AttemptCount)
		}
	})
	t.Run("HostedPageShowsTheInvoice", func(t *testing.T) {
		inv := b.invoice(t, sub.LatestInvoice.ID)
		resp, err := b.sc.Invoices.Get(inv.ID, nil)
		if err != nil || resp.HostedInvoiceURL == "" {
			t.Fatal(err)
		}
		r, err := httpGet(resp.HostedInvoiceURL)
		if err != nil || !contains(r, inv.Number) {
			t.Fatalf("hosted page: %v %q", err, r)
		}
	})
	t.Run("VoidCancelsItsPaymentIntent", func(t *testing.T) {
		inv, err := b.sc.Invoices.VoidInvoice(sub.LatestInvoice.ID, nil)
		if err != nil || inv.Status != "void" {
			t.Fatalf("void: %v, %v", inv, err)
		}
		_, err = b.sc.Invoices.Pay(inv.ID, nil)
		stripeErrStatus(t, err, 400)
	})
}

func TestADowngradeCreditCarriesToTheNextInvoice(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	sub := b.subscribe(t, cus, pl.pro)
	at := sub.CurrentPeriodStart + 10*86400
	p := &stripe.SubscriptionParams{ProrationBehavior: stripe.String("always_invoice"), ProrationDate: stripe.Int64(at),
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(sub.Items.Data[0].ID), Price: stripe.String(pl.basic)}}}
	p.AddExpand("latest_invoice")
	got, err := b.sc.Subscriptions.Update(sub.ID, p)
	if err != nil {
		t.Fatal(err)
	}
	net := prorated(1000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd) - prorated(3000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd)
	inv := got.LatestInvoice
	if inv.Total != net || inv.AmountDue != 0 || inv.Status != "paid" || inv.EndingBalance != net {
		t.Fatalf("downgrade invoice: total %d (want %d), due %d, %s, ending balance %d", inv.Total, net, inv.AmountDue, inv.Status, inv.EndingBalance)
	}
	if c, err := b.sc.Customers.Get(cus, nil); err != nil || c.Balance != net {
		t.Fatalf("customer balance %d, want %d (%v)", c.Balance, net, err)
	}
	up, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String(sub.ID)})
	if err != nil || up.AmountDue != max(0, 1000+net) || up.StartingBalance != net {
		t.Fatalf("next invoice due %d (want %d), starting balance %d: %v", up.AmountDue, max(0, 1000+net), up.StartingBalance, err)
	}
}
