package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"
)

// promoList renders Stripe's answer to a promotion code lookup.
func promoList(id, code string, active bool, expiresAt int64, max, redeemed int64, couponValid bool) string {
	return fmt.Sprintf(`{"object":"list","has_more":false,"data":[{"id":%q,"object":"promotion_code","code":%q,"active":%t,
		"expires_at":%d,"max_redemptions":%d,"times_redeemed":%d,"coupon":{"id":"co_1","object":"coupon","percent_off":20,"valid":%t}}]}`,
		id, code, active, expiresAt, max, redeemed, couponValid)
}

func TestPromotionCodes(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	t.Cleanup(w.fake.ClearRules)
	create := func(code, key string) gqlResponse {
		return w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{
			"workspaceId": w.wsA, "lookupKey": "starter_monthly", "promotionCode": code, "idempotencyKey": key}})
	}
	refusals := []struct {
		name, code, answer, message string
	}{
		{"Unknown", "NOPE20", `{"object":"list","has_more":false,"data":[]}`, "not valid"},
		{"Expired", "OLD20", promoList("promo_old", "OLD20", true, time.Now().Add(-time.Hour).Unix(), 0, 0, true), "expired"},
		{"Inactive", "OFF20", promoList("promo_off", "OFF20", false, 0, 0, 0, true), "expired"},
		{"CouponNoLongerValid", "CV20", promoList("promo_cv", "CV20", true, 0, 0, 0, false), "expired"},
		{"UsedUp", "FULL20", promoList("promo_full", "FULL20", true, 0, 5, 5, true), "used up"},
	}
	for i, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/promotion_codes", Times: 1, Body: tc.answer})
			before := w.fake.Count("POST", "/v1/subscriptions")
			r := create(tc.code, fmt.Sprint("promo-", i))
			if r.Code() != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, tc.message) || r.Errors[0].Extensions["field"] != "promotionCode" {
				t.Fatalf("got %s", r.Raw)
			}
			if w.fake.Count("POST", "/v1/subscriptions") != before {
				t.Fatal("a refused code still created a subscription")
			}
		})
	}
	// A code that looked valid, which Stripe then will not apply (a
	// restriction we do not check, or its coupon expired in between), is
	// the user's input, not our bug.
	for i, answer := range []string{
		stripefake.StripeError("invalid_request_error", "", "", "This promotion code cannot be redeemed because the associated customer has prior transactions."),
		stripefake.StripeError("invalid_request_error", "coupon_expired", "", "Coupon expired: co_1"),
	} {
		t.Run(fmt.Sprint("StripeRefusesTheCode", i), func(t *testing.T) {
			w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/promotion_codes", Times: 1, Body: promoList("promo_first", "FIRST20", true, 0, 0, 0, true)})
			body := answer
			if i == 0 {
				body = strings.Replace(answer, `"message"`, `"param":"promotion_code","message"`, 1)
			}
			w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Status: 400, Body: body})
			r := create("FIRST20", fmt.Sprint("promo-refused-", i))
			if r.Code() != "BAD_USER_INPUT" || r.Errors[0].Extensions["field"] != "promotionCode" {
				t.Fatalf("Stripe refusing the code: %s; want BAD_USER_INPUT on promotionCode", r.Raw)
			}
		})
	}
	t.Run("MalformedCodeIsRefusedWithoutAskingStripe", func(t *testing.T) {
		before := w.fake.Count("GET", "/v1/promotion_codes")
		if r := create("not a code!", "promo-bad"); r.Code() != "BAD_USER_INPUT" {
			t.Fatalf("got %s", r.Raw)
		}
		if w.fake.Count("GET", "/v1/promotion_codes") != before {
			t.Fatal("a malformed code was sent to Stripe")
		}
	})
	t.Run("ValidCodeIsAppliedAndTheDiscountShows", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/promotion_codes", Times: 1, Body: promoList("promo_ok", "SAVE20", true, 0, 10, 3, true)})
		sub := stripefake.SubscriptionJSON(stripefake.Subscription{ID: "sub_promo", Status: "active", PriceID: "price_starter_monthly",
			LookupKey: "starter_monthly", Metadata: map[string]string{"workspace_id": w.wsA, "plan": "starter"}})
		sub = strings.Replace(sub, `"id":"sub_promo"`, `"id":"sub_promo","discount":{"object":"discount","coupon":{"id":"co_1","object":"coupon","percent_off":20,"valid":true},"promotion_code":{"id":"promo_ok","object":"promotion_code","code":"SAVE20"}}`, 1)
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: sub})
		r := create("save20", "promo-ok")
		if r.Code() != "" {
			t.Fatal(r.Raw)
		}
		req, _ := w.fake.Last("GET", "/v1/promotion_codes")
		if req.Query.Get("code") != "save20" {
			t.Errorf("looked up code %q", req.Query.Get("code"))
		}
		post, _ := w.fake.Last("POST", "/v1/subscriptions")
		if post.Form.Get("promotion_code") != "promo_ok" {
			t.Fatalf("promotion_code sent = %q", post.Form.Get("promotion_code"))
		}
		var out struct {
			Workspace struct {
				Subscription struct {
					Discount *struct {
						Code       string
						PercentOff float64
						AmountOff  *int
					}
				}
			}
		}
		w.gql(t, w.carol, `query($w: ID!) { workspace(id: $w) { subscription { discount { code percentOff amountOff } } } }`,
			map[string]any{"w": w.wsA}).Decode(t, &out)
		d := out.Workspace.Subscription.Discount
		if d == nil || d.Code != "SAVE20" || d.PercentOff != 20 || d.AmountOff != nil {
			t.Fatalf("discount = %+v", d)
		}
	})
	t.Run("PlanChangeTakesACode", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/promotion_codes", Times: 1, Body: promoList("promo_up", "UPGRADE", true, 0, 0, 0, true)})
		activeSubscription(w, "POST", "/v1/subscriptions/sub_promo", "active", false, "pro_yearly", "price_pro_yearly")
		r := w.gql(t, w.alice, `mutation($in: ChangeSubscriptionPlanInput!) { changeSubscriptionPlan(input: $in) { status } }`,
			map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "pro_yearly", "promotionCode": "UPGRADE"}})
		post, _ := w.fake.Last("POST", "/v1/subscriptions/sub_promo")
		if r.Code() != "" || post.Form.Get("promotion_code") != "promo_up" {
			t.Fatalf("%s; promotion_code sent = %q", r.Raw, post.Form.Get("promotion_code"))
		}
	})
	t.Run("CheckoutAllowsPromotionCodes", func(t *testing.T) {
		r := w.gql(t, w.bob, createCheckoutMutation, checkoutIn(w.wsB, map[string]any{"allowPromotionCodes": true}))
		req, _ := w.fake.Last("POST", "/v1/checkout/sessions")
		if r.Code() != "" || req.Form.Get("allow_promotion_codes") != "true" {
			t.Fatalf("%s; allow_promotion_codes = %q", r.Raw, req.Form.Get("allow_promotion_codes"))
		}
	})
}
