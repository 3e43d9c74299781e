package sandbox

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func subscriptionSession(customer, email, price string, qty int64) *stripe.CheckoutSessionParams {
	p := &stripe.CheckoutSessionParams{
		Mode:       stripe.String("subscription"),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(price), Quantity: stripe.Int64(qty)}},
		SuccessURL: stripe.String("https://app.example.com/payment/success?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL:  stripe.String("https://app.example.com/payment/cancelled"),
		Metadata:   map[string]string{"workspace_id": "ws_1"},
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{
			Metadata: map[string]string{"workspace_id": "ws_1", "plan": "starter"}},
	}
	if customer != "" {
		p.Customer = stripe.String(customer)
	} else {
		p.CustomerEmail = stripe.String(email)
	}
	return p
}

func expandSub() *stripe.CheckoutSessionParams {
	return &stripe.CheckoutSessionParams{Expand: []*string{stripe.String("subscription")}}
}

// subsOf returns the statuses of a customer's subscriptions.
func (b *box) subsOf(t *testing.T, customer string) []string {
	t.Helper()
	var out []string
	b.locked(func(c *call) error {
		for _, s := range b.customerSubscriptions(customer) {
			out = append(out, str(s["status"]))
		}
		return nil
	})
	return out
}

func TestCheckoutPageInSubscriptionMode(t *testing.T) {
	b := newBox(t)
	monthly := b.chkPrice(t, 2900, "usd", "month")

	t.Run("PayingWith4242StartsAnActiveSubscriptionAndCompletesLast", func(t *testing.T) {
		b.delivered(t)
		before := len(b.recv.types())
		cs := b.chkSession(t, subscriptionSession("", "new@example.com", monthly.ID, 3))
		if cs.AmountTotal != 8700 {
			t.Fatalf("amount_total %d", cs.AmountTotal)
		}
		code, loc, body := chkSubmit(t, cs.URL, chkPay("4242424242424242"))
		if code != http.StatusSeeOther || loc != "https://app.example.com/payment/success?session_id="+cs.ID {
			t.Fatalf("subscribe: %d %q\n%s", code, loc, body)
		}
		got, err := b.sc.CheckoutSessions.Get(cs.ID, expandSub())
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "checkout.session", got.LastResponse.RawJSON)
		if got.Status != "complete" || got.PaymentStatus != "paid" || got.Subscription == nil || got.Customer == nil ||
			got.CustomerDetails == nil || got.CustomerDetails.Email != "new@example.com" {
			t.Fatalf("session %+v", got)
		}
		sub := got.Subscription
		if sub.Status != "active" || sub.Metadata["workspace_id"] != "ws_1" || sub.Customer.ID != got.Customer.ID ||
			sub.DefaultPaymentMethod == nil || len(sub.Items.Data) != 1 || sub.Items.Data[0].Quantity != 3 {
			t.Fatalf("subscription %+v", sub)
		}
		evs := b.delivered(t)[before:]
		if evs[len(evs)-1] != "checkout.session.completed" || slices.Index(evs, "customer.created") != 0 {
			t.Fatalf("events %v: want customer.created first and checkout.session.completed last", evs)
		}
		for _, want := range []string{"payment_method.attached", "customer.subscription.created", "invoice.paid", "payment_intent.succeeded"} {
			if !slices.Contains(evs, want) {
				t.Errorf("no %s among %v", want, evs)
			}
		}
	})

	t.Run("ATrialCompletesWithNoPaymentRequired", func(t *testing.T) {
		p := subscriptionSession("", "trial@example.com", monthly.ID, 1)
		p.SubscriptionData.TrialPeriodDays = stripe.Int64(14)
		cs := b.chkSession(t, p)
		code, loc, body := chkSubmit(t, cs.URL, chkPay("4242424242424242"))
		if code != http.StatusSeeOther || !strings.Contains(loc, cs.ID) {
			t.Fatalf("trial: %d %q\n%s", code, loc, body)
		}
		got, _ := b.sc.CheckoutSessions.Get(cs.ID, expandSub())
		if got.Status != "complete" || got.PaymentStatus != "no_payment_required" || got.Subscription.Status != "trialing" {
			t.Fatalf("trial session %s %s, subscription %+v", got.Status, got.PaymentStatus, got.Subscription)
		}
	})

	t.Run("ACardDeclinedAtAttachStartsNothing", func(t *testing.T) {
		cu := b.chkCustomer(t)
		cs := b.chkSession(t, subscriptionSession(cu.ID, "", monthly.ID, 1))
		code, _, body := chkSubmit(t, cs.URL, chkPay("4000000000000002"))
		if code != http.StatusPaymentRequired || !strings.Contains(body, "Your card was declined.") {
			t.Fatalf("declined: %d\n%s", code, body)
		}
		if got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil); got.Status != "open" || got.Subscription != nil {
			t.Fatalf("session %s, subscription %v", got.Status, got.Subscription)
		}
		if subs := b.subsOf(t, cu.ID); len(subs) != 0 {
			t.Fatalf("subscriptions %v", subs)
		}
	})

	t.Run("AFirstPaymentDeclinedLeavesTheSessionOpenThenAnotherCardPaysIt", func(t *testing.T) {
		cu := b.chkCustomer(t)
		cs := b.chkSession(t, subscriptionSession(cu.ID, "", monthly.ID, 1))
		code, _, body := chkSubmit(t, cs.URL, chkPay("4000000000000341"))
		if code != http.StatusPaymentRequired || !strings.Contains(body, "Your card was declined.") {
			t.Fatalf("declined first payment: %d\n%s", code, body)
		}
		if got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil); got.Status != "open" {
			t.Fatalf("session %s", got.Status)
		}
		if subs := b.subsOf(t, cu.ID); slices.Contains(subs, "active") {
			t.Fatalf("a declined first payment left subscriptions %v", subs)
		}
		code, loc, body := chkSubmit(t, cs.URL, chkPay("4242424242424242"))
		if code != http.StatusSeeOther || !strings.Contains(loc, cs.ID) {
			t.Fatalf("retry: %d %q\n%s", code, loc, body)
		}
		got, _ := b.sc.CheckoutSessions.Get(cs.ID, expandSub())
		if got.Status != "complete" || got.Subscription.Status != "active" {
			t.Fatalf("after retry: %s %+v", got.Status, got.Subscription)
		}
		if subs := b.subsOf(t, cu.ID); !slices.Equal(subs, []string{"active"}) {
			t.Fatalf("the retry started another subscription: %v", subs)
		}
	})

	for _, tc := range []struct {
		name   string
		passed bool
	}{{"Passed", true}, {"Failed", false}} {
		t.Run("ThreeDSecureOnTheFirstPayment"+tc.name, func(t *testing.T) {
			b.delivered(t)
			before := len(b.recv.types())
			cu := b.chkCustomer(t)
			cs := b.chkSession(t, subscriptionSession(cu.ID, "", monthly.ID, 1))
			code, loc, body := chkSubmit(t, cs.URL, chkPay("4000002500003155"))
			if code != http.StatusSeeOther || !strings.HasPrefix(loc, b.URL+"/3ds/pi_") {
				t.Fatalf("3DS: %d %q\n%s", code, loc, body)
			}
			if got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil); got.Status != "open" {
				t.Fatalf("completed before the challenge: %s", got.Status)
			}
			piID := strings.TrimPrefix(loc, b.URL+"/3ds/")
			if err := b.locked(func(c *call) error { return b.completeAuthentication(c, b.get("payment_intent", piID), tc.passed) }); err != nil {
				t.Fatal(err)
			}
			got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil)
			subs := b.subsOf(t, cu.ID)
			evs := b.delivered(t)[before:]
			if tc.passed {
				if got.Status != "complete" || got.Subscription == nil || !slices.Equal(subs, []string{"active"}) || evs[len(evs)-1] != "checkout.session.completed" {
					t.Fatalf("after passing: %s, subs %v, events %v", got.Status, subs, evs)
				}
				return
			}
			if got.Status != "open" || slices.Contains(subs, "active") || slices.Contains(evs, "checkout.session.completed") {
				t.Fatalf("after failing: %s, subs %v, events %v", got.Status, subs, evs)
			}
			if _, _, body := chkGet(t, cs.URL); !strings.Contains(body, "failed authentication") {
				t.Fatalf("the page does not say the challenge failed:\n%s", body)
			}
		})
	}
}

func TestBillingPortalManagesASubscription(t *testing.T) {
	b := newBox(t)
	monthly := b.chkPrice(t, 2900, "usd", "month")
	cu := b.chkCustomer(t)
	cs := b.chkSession(t, subscriptionSession(cu.ID, "", monthly.ID, 1))
	code, _, body := chkSubmit(t, cs.URL, chkPay("4242424242424242"))
	got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil)
	if got.Subscription == nil {
		t.Fatalf("no subscription: %d\n%s", code, body)
	}
	subID := got.Subscription.ID
	ps := b.chkPortal(t, cu.ID)

	t.Run("ShowsThePlanAndRenewal", func(t *testing.T) {
		_, _, body := chkGet(t, ps.URL)
		if !strings.Contains(body, "$29.00 per month") || !strings.Contains(body, "Status: active") || !strings.Contains(body, "Renews on") {
			t.Fatalf("portal:\n%s", body)
		}
	})

	t.Run("CancelAtPeriodEndAndTakeItBack", func(t *testing.T) {
		for _, step := range []struct {
			action string
			want   bool
			page   string
		}{{"cancel", true, "Cancels on"}, {"renew", false, "Renews on"}} {
			code, loc, body := chkSubmit(t, ps.URL, url.Values{"action": {step.action}, "subscription": {subID}})
			if code != http.StatusSeeOther {
				t.Fatalf("%s: %d\n%s", step.action, code, body)
			}
			sub, err := b.sc.Subscriptions.Get(subID, nil)
			if err != nil || sub.CancelAtPeriodEnd != step.want || sub.Status != "active" {
				t.Fatalf("after %s: %+v %v", step.action, sub, err)
			}
			if _, _, body := chkGet(t, b.URL+loc); !strings.Contains(body, step.page) {
				t.Fatalf("after %s the page does not say %q:\n%s", step.action, step.page, body)
			}
		}
	})

	t.Run("UpdateCardAlsoUpdatesTheSubscription", func(t *testing.T) {
		b.delivered(t)
		before := len(b.recv.types())
		code, _, body := chkSubmit(t, ps.URL, url.Values{"action": {"update_card"}, "card_number": {"5555555555554444"}})
		if code != http.StatusSeeOther {
			t.Fatalf("update card: %d\n%s", code, body)
		}
		sub, _ := b.sc.Subscriptions.Get(subID, nil)
		c, _ := b.sc.Customers.Get(cu.ID, nil)
		if sub.DefaultPaymentMethod == nil || c.InvoiceSettings.DefaultPaymentMethod == nil || sub.DefaultPaymentMethod.ID != c.InvoiceSettings.DefaultPaymentMethod.ID {
			t.Fatalf("subscription's card %v, customer's %v", sub.DefaultPaymentMethod, c.InvoiceSettings.DefaultPaymentMethod)
		}
		want := []string{"payment_method.attached", "customer.updated", "customer.subscription.updated"}
		if evs := b.delivered(t)[before:]; !slices.Equal(evs, want) {
			t.Fatalf("events %v, want %v", evs, want)
		}
	})

	t.Run("RefusesAnotherCustomersSubscription", func(t *testing.T) {
		other := b.chkPortal(t, b.chkCustomer(t).ID)
		code, _, _ := chkSubmit(t, other.URL, url.Values{"action": {"cancel"}, "subscription": {subID}})
		if code != http.StatusNotFound {
			t.Fatalf("cancel through another customer's portal: %d", code)
		}
	})
}

func TestCheckoutPromotionCodes(t *testing.T) {
	b := newBox(t)
	co, err := b.sc.Coupons.New(&stripe.CouponParams{PercentOff: stripe.Float64(25), Duration: stripe.String("forever")})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := b.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String(co.ID), Code: stripe.String("SPRING25")})
	if err != nil {
		t.Fatal(err)
	}
	cu := b.chkCustomer(t)
	once := b.chkPrice(t, 2000, "usd", "")
	monthly := b.chkPrice(t, 4000, "usd", "month")

	t.Run("TypedOnThePageInPaymentMode", func(t *testing.T) {
		p := paymentSession(cu.ID, once.ID, 1)
		p.AllowPromotionCodes = stripe.Bool(true)
		cs := b.chkSession(t, p)
		if _, _, body := chkGet(t, cs.URL); !strings.Contains(body, `name="promotion_code"`) {
			t.Fatalf("no promotion code field:\n%s", body)
		}
		code, _, body := chkSubmit(t, cs.URL, url.Values{"action": {"pay"}, "card_number": {"4242424242424242"}, "promotion_code": {"NOPE"}})
		if code != http.StatusBadRequest || !strings.Contains(body, "This code is invalid.") {
			t.Fatalf("unknown code: %d\n%s", code, body)
		}
		code, _, body = chkSubmit(t, cs.URL, url.Values{"action": {"pay"}, "card_number": {"4242424242424242"}, "promotion_code": {"spring25"}})
		if code != http.StatusSeeOther {
			t.Fatalf("with the code: %d\n%s", code, body)
		}
		got, _ := b.sc.CheckoutSessions.Get(cs.ID, expandPI())
		if got.AmountSubtotal != 2000 || got.AmountTotal != 1500 || got.TotalDetails.AmountDiscount != 500 || got.PaymentIntent.Amount != 1500 {
			t.Fatalf("subtotal %d total %d discount %d paid %d", got.AmountSubtotal, got.AmountTotal, got.TotalDetails.AmountDiscount, got.PaymentIntent.Amount)
		}
		if redeemed, err := b.sc.PromotionCodes.Get(pc.ID, nil); err != nil || redeemed.TimesRedeemed != 1 {
			t.Fatalf("the code was redeemed %d times (%v), want 1", redeemed.TimesRedeemed, err)
		}
	})

	t.Run("NoFieldWhenNotAllowed", func(t *testing.T) {
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 1))
		if _, _, body := chkGet(t, cs.URL); strings.Contains(body, `name="promotion_code"`) {
			t.Fatal("a promotion code field on a session that does not allow them")
		}
	})

	t.Run("GivenAtCreationInSubscriptionMode", func(t *testing.T) {
		p := subscriptionSession(cu.ID, "", monthly.ID, 1)
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(pc.ID)}}
		cs := b.chkSession(t, p)
		if cs.AmountTotal != 3000 {
			t.Fatalf("amount_total %d, want 3000", cs.AmountTotal)
		}
		if _, _, body := chkGet(t, cs.URL); !strings.Contains(body, `id="total">$30.00<`) {
			t.Fatalf("page total:\n%s", body)
		}
		code, _, body := chkSubmit(t, cs.URL, chkPay("4242424242424242"))
		if code != http.StatusSeeOther {
			t.Fatalf("subscribe: %d\n%s", code, body)
		}
		got, _ := b.sc.CheckoutSessions.Get(cs.ID, expandSub())
		if got.Subscription.Discount == nil || got.Subscription.Discount.Coupon.ID != co.ID || got.AmountTotal != 3000 {
			t.Fatalf("subscription discount %+v, session total %d", got.Subscription.Discount, got.AmountTotal)
		}
	})

	t.Run("RefusesAnInactiveCodeAtCreation", func(t *testing.T) {
		inactive, err := b.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String(co.ID), Code: stripe.String("OLD"), Active: stripe.Bool(false)})
		if err != nil {
			t.Fatal(err)
		}
		p := paymentSession(cu.ID, once.ID, 1)
		p.Discounts = []*stripe.CheckoutSessionDiscountParams{{PromotionCode: stripe.String(inactive.ID)}}
		_, err = b.sc.CheckoutSessions.New(p)
		if se := checkoutErr(t, err); se.HTTPStatusCode != 400 || se.Param != "discounts[0][promotion_code]" {
			t.Fatalf("%d %q %s", se.HTTPStatusCode, se.Param, se.Msg)
		}
	})
}
