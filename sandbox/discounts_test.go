package sandbox

import (
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

func TestCouponsAndPromotionCodes(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	percent, err := b.sc.Coupons.New(&stripe.CouponParams{ID: stripe.String("TWENTY"), PercentOff: stripe.Float64(20),
		Duration: stripe.String("forever"), Name: stripe.String("20% off")})
	if err != nil {
		t.Fatal(err)
	}
	shaped(t, "coupon", percent.LastResponse.RawJSON)
	promo, err := b.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String(percent.ID), Code: stripe.String("SAVE20"),
		MaxRedemptions: stripe.Int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	shaped(t, "promotion_code", promo.LastResponse.RawJSON)

	t.Run("ListFindsACodeByItsText", func(t *testing.T) {
		it := b.sc.PromotionCodes.List(&stripe.PromotionCodeListParams{Code: stripe.String("SAVE20"), Active: stripe.Bool(true)})
		if !it.Next() || it.PromotionCode().ID != promo.ID || it.PromotionCode().Coupon.PercentOff != 20 || it.Next() {
			t.Fatal("SAVE20 is not found alone")
		}
		if it := b.sc.PromotionCodes.List(&stripe.PromotionCodeListParams{Code: stripe.String("NOPE")}); it.Next() {
			t.Fatal("an unknown code is found")
		}
	})
	t.Run("APromotionCodeDiscountsTheSubscription", func(t *testing.T) {
		p := &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic), PromotionCode: stripe.String(promo.ID)}
		p.AddExpand("discount.promotion_code")
		p.AddExpand("latest_invoice")
		sub, err := b.sc.Subscriptions.New(p)
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "subscription", sub.LastResponse.RawJSON)
		d := sub.Discount
		if d == nil || d.PromotionCode == nil || d.PromotionCode.Code != "SAVE20" || d.Coupon.ID != "TWENTY" || d.Coupon.PercentOff != 20 {
			t.Fatalf("discount %+v", d)
		}
		inv := sub.LatestInvoice
		if inv.Subtotal != 1000 || inv.Total != 800 || inv.AmountPaid != 800 || len(inv.TotalDiscountAmounts) != 1 ||
			inv.TotalDiscountAmounts[0].Amount != 200 {
			t.Fatalf("invoice subtotal %d total %d paid %d discounts %+v", inv.Subtotal, inv.Total, inv.AmountPaid, inv.TotalDiscountAmounts)
		}
		shaped(t, "invoice", b.invoice(t, inv.ID).LastResponse.RawJSON)
		if up, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String(sub.ID)}); err != nil || up.AmountDue != 800 {
			t.Fatalf("a forever coupon's upcoming invoice: %v, %v", up, err)
		}
	})
	t.Run("AUsedUpCodeIsRefused", func(t *testing.T) {
		_, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.pro), PromotionCode: stripe.String(promo.ID)})
		if se := stripeErrStatus(t, err, 400); se.Param != "promotion_code" {
			t.Fatalf("param %s", se.Param)
		}
		got, err := b.sc.PromotionCodes.Get(promo.ID, nil)
		if err != nil || got.Active || got.TimesRedeemed != 1 {
			t.Fatalf("after its one redemption: active %v, redeemed %d (%v)", got.Active, got.TimesRedeemed, err)
		}
	})
	t.Run("AOnceCouponDiscountsOnlyTheFirstInvoice", func(t *testing.T) {
		once, err := b.sc.Coupons.New(&stripe.CouponParams{AmountOff: stripe.Int64(500), Currency: stripe.String("usd"), Duration: stripe.String("once")})
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "coupon", once.LastResponse.RawJSON)
		p := &stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.seat), Coupon: stripe.String(once.ID)}
		p.AddExpand("latest_invoice")
		sub, err := b.sc.Subscriptions.New(p)
		if err != nil {
			t.Fatal(err)
		}
		if sub.LatestInvoice.AmountPaid != 0 || sub.Status != "active" {
			t.Fatalf("first invoice paid %d, %s; want 0 (500 off 500), active", sub.LatestInvoice.AmountPaid, sub.Status)
		}
		b.Advance(time.Duration(sub.CurrentPeriodEnd-sub.CurrentPeriodStart+draftHour+60) * time.Second)
		if got := b.sub(t, sub.ID); got.LatestInvoice.AmountPaid != 500 || got.Discount != nil {
			t.Fatalf("renewal paid %d, discount %v; want 500 and none", got.LatestInvoice.AmountPaid, got.Discount)
		}
	})
	t.Run("ADiscountAddedByAnUpdate", func(t *testing.T) {
		sub := b.subscribe(t, cus, pl.yearly)
		got, err := b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Coupon: stripe.String(percent.ID)})
		if err != nil || got.Discount == nil || got.Discount.Coupon.ID != percent.ID {
			t.Fatalf("update with a coupon: %v, %v", got, err)
		}
		if up, err := b.sc.Invoices.Upcoming(&stripe.InvoiceUpcomingParams{Subscription: stripe.String(sub.ID)}); err != nil || up.AmountDue != 8000 {
			t.Fatalf("upcoming with the coupon: %v, %v", up, err)
		}
	})
	cases := []struct {
		name  string
		p     *stripe.CouponParams
		param string
	}{
		{"BothPercentAndAmount", &stripe.CouponParams{PercentOff: stripe.Float64(10), AmountOff: stripe.Int64(100), Currency: stripe.String("usd")}, "percent_off"},
		{"AmountWithoutCurrency", &stripe.CouponParams{AmountOff: stripe.Int64(100)}, "currency"},
		{"RepeatingWithoutMonths", &stripe.CouponParams{PercentOff: stripe.Float64(10), Duration: stripe.String("repeating")}, "duration_in_months"},
		{"TakenID", &stripe.CouponParams{ID: stripe.String("TWENTY"), PercentOff: stripe.Float64(10)}, "id"},
	}
	for _, tc := range cases {
		t.Run("Refuses"+tc.name, func(t *testing.T) {
			_, err := b.sc.Coupons.New(tc.p)
			if se := stripeErrStatus(t, err, 400); se.Param != tc.param {
				t.Fatalf("param %q, want %q", se.Param, tc.param)
			}
		})
	}
}

// An amount-off coupon discounts only its own currency: Stripe refuses a
// euro coupon on a dollar subscription rather than take 500 cents off.
func TestAmountOffCouponOfAnotherCurrencyIsRefused(t *testing.T) {
	b := newBox(t)
	pl := b.plans(t)
	cus, _ := b.customer(t, "pm_card_visa", "")
	euros, err := b.sc.Coupons.New(&stripe.CouponParams{AmountOff: stripe.Int64(500), Currency: stripe.String("eur"), Duration: stripe.String("once")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(cus), Items: items(pl.basic), Coupon: stripe.String(euros.ID)})
	if se := stripeErrStatus(t, err, 400); se.Param != "coupon" {
		t.Fatalf("a eur coupon on a usd subscription: %v", err)
	}
	sub := b.subscribe(t, cus, pl.basic)
	_, err = b.sc.Subscriptions.Update(sub.ID, &stripe.SubscriptionParams{Coupon: stripe.String(euros.ID)})
	stripeErrStatus(t, err, 400)
	if got, _ := b.sc.Subscriptions.Get(sub.ID, nil); got.Discount != nil {
		t.Fatalf("the refused coupon was applied: %+v", got.Discount)
	}
}
