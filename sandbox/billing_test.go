package sandbox

import (
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// clock makes a Stripe test clock frozen at a fixed time.
func (b *box) clock(t *testing.T) (string, int64) {
	t.Helper()
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).Unix()
	tc, err := b.sc.TestHelpersTestClocks.New(&stripe.TestHelpersTestClockParams{FrozenTime: stripe.Int64(start)})
	if err != nil {
		t.Fatal(err)
	}
	return tc.ID, start
}

func (b *box) advanceClock(t *testing.T, clock string, to int64) {
	t.Helper()
	if _, err := b.sc.TestHelpersTestClocks.Advance(clock, &stripe.TestHelpersTestClockAdvanceParams{FrozenTime: stripe.Int64(to)}); err != nil {
		t.Fatal(err)
	}
}

var billingEvents = []string{"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
	"customer.subscription.trial_will_end", "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded",
	"invoice.payment_failed", "invoice.voided"}

func TestTrialThenRenewalsOnATestClock(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	clock, start := b.clock(t)
	cus, _ := b.customer(t, "pm_card_visa", clock)
	sub, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic),
		TrialPeriodDays: stripe.Int64(14)})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Status != "trialing" || sub.TrialEnd != start+14*86400 || sub.CurrentPeriodEnd != sub.TrialEnd || sub.Created != start {
		t.Fatalf("new trial: %s, trial_end %d, period end %d, created %d", sub.Status, sub.TrialEnd, sub.CurrentPeriodEnd, sub.Created)
	}
	n := len(b.delivered(t))

	t.Run("TrialWillEndThreeDaysBefore", func(t *testing.T) {
		b.advanceClock(t, clock, sub.TrialEnd-3*86400-60)
		eventsAre(t, only(b.since(t, n), billingEvents...))
		b.advanceClock(t, clock, sub.TrialEnd-3*86400+60)
		eventsAre(t, only(b.since(t, n), billingEvents...), "customer.subscription.trial_will_end")
		n = len(b.delivered(t))
	})
	t.Run("TrialEndsWithADraftInvoiceForAnHour", func(t *testing.T) {
		b.advanceClock(t, clock, sub.TrialEnd+60)
		got := b.sub(t, sub.ID)
		if got.Status != "active" || got.LatestInvoice.Status != "draft" || got.LatestInvoice.BillingReason != "subscription_cycle" {
			t.Fatalf("just after the trial: %s, invoice %s %s", got.Status, got.LatestInvoice.Status, got.LatestInvoice.BillingReason)
		}
		eventsAre(t, only(b.since(t, n), billingEvents...), "customer.subscription.updated", "invoice.created")
		n = len(b.delivered(t))
	})
	t.Run("TrialEndsActiveWithAPaidCycleInvoice", func(t *testing.T) {
		b.advanceClock(t, clock, sub.TrialEnd+3700)
		got := b.sub(t, sub.ID)
		if got.Status != "active" || got.CurrentPeriodStart != sub.TrialEnd ||
			got.CurrentPeriodEnd != time.Unix(sub.TrialEnd, 0).UTC().AddDate(0, 1, 0).Unix() {
			t.Fatalf("after the trial: %s, period %d-%d", got.Status, got.CurrentPeriodStart, got.CurrentPeriodEnd)
		}
		inv := got.LatestInvoice
		if inv.Status != "paid" || inv.AmountPaid != 1000 || inv.BillingReason != "subscription_cycle" || inv.Created != sub.TrialEnd {
			t.Fatalf("trial's end invoice: %s paid %d, %s, created %d", inv.Status, inv.AmountPaid, inv.BillingReason, inv.Created)
		}
		eventsAre(t, only(b.since(t, n), append(billingEvents, "payment_intent.succeeded")...),
			"invoice.finalized", "payment_intent.succeeded",
			"invoice.paid", "invoice.payment_succeeded")
		n = len(b.delivered(t))
	})
	t.Run("RenewsAtPeriodEnd", func(t *testing.T) {
		before := b.sub(t, sub.ID)
		b.advanceClock(t, clock, before.CurrentPeriodEnd+3700)
		got := b.sub(t, sub.ID)
		if got.Status != "active" || got.CurrentPeriodStart != before.CurrentPeriodEnd || got.LatestInvoice.ID == before.LatestInvoice.ID ||
			got.LatestInvoice.Status != "paid" || got.LatestInvoice.PeriodStart != before.CurrentPeriodStart ||
			got.LatestInvoice.PeriodEnd != before.CurrentPeriodEnd {
			t.Fatalf("renewal: %s, period from %d, invoice %s %s period %d-%d", got.Status, got.CurrentPeriodStart,
				got.LatestInvoice.ID, got.LatestInvoice.Status, got.LatestInvoice.PeriodStart, got.LatestInvoice.PeriodEnd)
		}
		eventsAre(t, only(b.since(t, n), billingEvents...),
			"customer.subscription.updated", "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded")
	})
}

func TestFailedRenewal(t *testing.T) {
	// A trial on the card that attaches but declines every charge: the
	// trial's end invoice fails, then is retried 3, 5 and 7 days later.
	setup := func(t *testing.T, mod ...func(*Options)) (*box, string, *stripe.Subscription, string) {
		b := newBox(t, mod...)
		pl := b.plans(t)
		clock, _ := b.clock(t)
		cus, _ := b.customer(t, "pm_card_chargeCustomerFail", clock)
		sub, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic),
			TrialPeriodDays: stripe.Int64(7)})
		if err != nil {
			t.Fatal(err)
		}
		n := len(b.delivered(t))
		b.advanceClock(t, clock, sub.TrialEnd+3700)
		got := b.sub(t, sub.ID)
		inv := got.LatestInvoice
		if got.Status != "past_due" || inv.Status != "open" || inv.AttemptCount != 1 || inv.NextPaymentAttempt != sub.TrialEnd+draftHour+3*86400 {
			t.Fatalf("after the failed charge: %s, invoice %s attempts %d next %d", got.Status, inv.Status, inv.AttemptCount, inv.NextPaymentAttempt)
		}
		eventsAre(t, only(b.since(t, n), billingEvents...), "customer.subscription.trial_will_end", "customer.subscription.updated",
			"invoice.created", "invoice.finalized", "invoice.payment_failed", "customer.subscription.updated")
		return b, clock, got, cus
	}
	retries := func(t *testing.T, b *box, clock string, sub *stripe.Subscription) {
		t.Helper()
		first := sub.CurrentPeriodStart + draftHour // the first attempt, after the draft hour
		for i, d := range []int64{3, 5} {
			b.advanceClock(t, clock, first+d*86400+60)
			inv := b.invoice(t, sub.LatestInvoice.ID)
			if inv.AttemptCount != int64(i+2) || inv.Status != "open" {
				t.Fatalf("after the retry on day %d: attempts %d, %s", d, inv.AttemptCount, inv.Status)
			}
			if got := b.sub(t, sub.ID); got.Status != "past_due" {
				t.Fatalf("after the retry on day %d: %s", d, got.Status)
			}
		}
		b.advanceClock(t, clock, first+7*86400+60)
		if inv := b.invoice(t, sub.LatestInvoice.ID); inv.AttemptCount != 4 || inv.NextPaymentAttempt != 0 {
			t.Fatalf("after the last retry: attempts %d, next %d", inv.AttemptCount, inv.NextPaymentAttempt)
		}
	}
	t.Run("PastDueThenCanceledAfterTheLastRetry", func(t *testing.T) {
		b, clock, sub, _ := setup(t)
		n := len(b.delivered(t))
		retries(t, b, clock, sub)
		got := b.sub(t, sub.ID)
		if got.Status != "canceled" || got.EndedAt == 0 || got.CancellationDetails.Reason != "payment_failed" {
			t.Fatalf("after the last retry: %s ended %d %+v", got.Status, got.EndedAt, got.CancellationDetails)
		}
		eventsAre(t, only(b.since(t, n), billingEvents...), "invoice.payment_failed", "invoice.payment_failed",
			"invoice.payment_failed", "customer.subscription.deleted")
	})
	t.Run("PastDueThenUnpaidWhenConfigured", func(t *testing.T) {
		b, clock, sub, _ := setup(t, func(o *Options) { o.FailedRenewal = "unpaid" })
		retries(t, b, clock, sub)
		if got := b.sub(t, sub.ID); got.Status != "unpaid" {
			t.Fatalf("after the last retry: %s", got.Status)
		}
	})
	t.Run("ANewDefaultCardRecoversItAtTheNextRetry", func(t *testing.T) {
		b, clock, sub, cus := setup(t)
		b.card(t, cus, "pm_card_visa")
		n := len(b.delivered(t))
		b.advanceClock(t, clock, sub.CurrentPeriodStart+draftHour+3*86400+60)
		got := b.sub(t, sub.ID)
		if got.Status != "active" || got.LatestInvoice.Status != "paid" || got.LatestInvoice.AttemptCount != 2 {
			t.Fatalf("after the retry with a new card: %s, invoice %s attempts %d", got.Status, got.LatestInvoice.Status, got.LatestInvoice.AttemptCount)
		}
		eventsAre(t, only(b.since(t, n), billingEvents...), "invoice.paid", "invoice.payment_succeeded", "customer.subscription.updated")
	})
	t.Run("PayingTheInvoiceRecoversIt", func(t *testing.T) {
		b, _, sub, cus := setup(t)
		pm := b.card(t, cus, "pm_card_visa")
		inv, err := b.sc.Invoices.Pay(sub.LatestInvoice.ID, &stripe.InvoicePayParams{PaymentMethod: stripe.String(pm)})
		if err != nil || inv.Status != "paid" {
			t.Fatalf("pay: %v, %v", inv, err)
		}
		if got := b.sub(t, sub.ID); got.Status != "active" {
			t.Fatalf("after paying: %s", got.Status)
		}
	})
}

func TestCancellation(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	newSub := func(t *testing.T) *stripe.Subscription {
		sub := b.subscribe(t, cus, pl.basic)
		return sub
	}
	t.Run("AtPeriodEndSetsCanceledAtAndUnschedulingClearsIt", func(t *testing.T) {
		sub := newSub(t)
		got, err := b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		if !got.CancelAtPeriodEnd || got.CanceledAt == 0 || got.CancelAt != got.CurrentPeriodEnd || got.Status != "active" {
			t.Fatalf("scheduled: %+v", got)
		}
		n := len(b.delivered(t))
		got, err = b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)})
		if err != nil {
			t.Fatal(err)
		}
		if got.CancelAtPeriodEnd || got.CanceledAt != 0 || got.CancelAt != 0 {
			t.Fatalf("unscheduled: %+v", got)
		}
		eventsAre(t, b.since(t, n), "customer.subscription.updated")
		b.sc.Subscriptions.Cancel(sub.ID, nil)
	})
	t.Run("AtPeriodEndEndsInsteadOfRenewing", func(t *testing.T) {
		sub := newSub(t)
		if _, err := b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}); err != nil {
			t.Fatal(err)
		}
		n := len(b.delivered(t))
		b.Advance(time.Duration(sub.CurrentPeriodEnd-sub.CurrentPeriodStart+60) * time.Second)
		got := b.sub(t, sub.ID)
		if got.Status != "canceled" || got.EndedAt != sub.CurrentPeriodEnd || got.LatestInvoice.ID != sub.LatestInvoice.ID {
			t.Fatalf("at period end: %s, ended %d (period end %d), latest invoice %s", got.Status, got.EndedAt, sub.CurrentPeriodEnd, got.LatestInvoice.ID)
		}
		eventsAre(t, only(b.since(t, n), billingEvents...), "customer.subscription.deleted")
	})
	t.Run("NowEndsItAtOnce", func(t *testing.T) {
		sub := newSub(t)
		n := len(b.delivered(t))
		got, err := b.sc.Subscriptions.Cancel(sub.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "subscription", got.LastResponse.RawJSON)
		if got.Status != "canceled" || got.CanceledAt == 0 || got.EndedAt == 0 {
			t.Fatalf("canceled: %+v", got)
		}
		eventsAre(t, b.since(t, n), "customer.subscription.deleted")
		_, err = b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)})
		stripeErrStatus(t, err, 400)
	})
	t.Run("InvoiceNowIsRefusedByName", func(t *testing.T) {
		sub := newSub(t)
		_, err := b.sc.Subscriptions.Cancel(sub.ID, &stripe.SubscriptionCancelParams{InvoiceNow: stripe.Bool(true)})
		stripeErrStatus(t, err, 501)
	})
}

func TestPeriodsKeepTheDayOfTheMonth(t *testing.T) {
	at := func(y int, m time.Month, d int) int64 { return time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Unix() }
	cases := []struct {
		name     string
		from     int64
		interval string
		n        int64
		want     int64
	}{
		{"MonthFromThe15th", at(2026, 1, 15), "month", 1, at(2026, 2, 15)},
		{"MonthFromThe31stClampsToFebruary", at(2026, 1, 31), "month", 1, at(2026, 2, 28)},
		{"TwoMonthsFromThe31stIsMarch31", at(2026, 1, 31), "month", 2, at(2026, 3, 31)},
		{"YearFromALeapDay", at(2028, 2, 29), "year", 1, at(2029, 2, 28)},
		{"Week", at(2026, 1, 1), "week", 1, at(2026, 1, 8)},
		{"DecemberToJanuary", at(2026, 12, 5), "month", 1, at(2027, 1, 5)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := addInterval(tc.from, tc.interval, tc.n); got != tc.want {
				t.Fatalf("got %s, want %s", time.Unix(got, 0).UTC(), time.Unix(tc.want, 0).UTC())
			}
		})
	}
}

func TestASubscriptionRenewsAfterARestart(t *testing.T) {
	dir := t.TempDir()
	b := newBox(t, func(o *Options) { o.DataDir = dir })
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	sub := b.subscribe(t, cus, pl.basic)
	at := sub.CurrentPeriodStart + 86400
	if _, err := b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{ProrationDate: stripe.Int64(at),
		Items: []*stripe.SubscriptionItemsParams{{ID: stripe.String(sub.Items.Data[0].ID), Quantity: stripe.Int64(2)}}}); err != nil {
		t.Fatal(err)
	}
	b.delivered(t)
	b.Close()
	again := newBox(t, func(o *Options) { o.DataDir = dir })
	again.Advance(time.Duration(sub.CurrentPeriodEnd-sub.CurrentPeriodStart+draftHour+60) * time.Second)
	got := again.sub(t, sub.ID)
	want := 2000 + prorated(2000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd) - prorated(1000, at, sub.CurrentPeriodStart, sub.CurrentPeriodEnd)
	if got.CurrentPeriodStart != sub.CurrentPeriodEnd || got.LatestInvoice.Status != "paid" || got.LatestInvoice.AmountPaid != want {
		t.Fatalf("after a restart: period from %d (want %d), invoice %s paid %d (want %d)", got.CurrentPeriodStart, sub.CurrentPeriodEnd,
			got.LatestInvoice.Status, got.LatestInvoice.AmountPaid, want)
	}
}
