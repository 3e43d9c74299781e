package sandbox

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// chkNoFollow is an HTTP client that reports redirects instead of following
// them, so that a test sees where a page sends the customer.
var chkNoFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// submit posts a hosted page's form and returns the status, the Location
// and the body.
func chkSubmit(t *testing.T, pageURL string, form url.Values) (int, string, string) {
	t.Helper()
	resp, err := chkNoFollow.PostForm(pageURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

func chkGet(t *testing.T, pageURL string) (int, string, string) {
	t.Helper()
	resp, err := chkNoFollow.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

func chkPay(number string) url.Values {
	return url.Values{"action": {"pay"}, "card_number": {number}}
}

// price makes a product and a price: interval "" for a one-time price.
func (b *box) chkPrice(t *testing.T, amount int64, currency, interval string) *stripe.Price {
	t.Helper()
	prod, err := b.sc.Products.New(&stripe.ProductParams{Name: stripe.String("Plan " + currency + interval)})
	if err != nil {
		t.Fatal(err)
	}
	pp := &stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(amount), Currency: stripe.String(currency)}
	if interval != "" {
		pp.Recurring = &stripe.PriceRecurringParams{Interval: stripe.String(interval)}
	}
	p, err := b.sc.Prices.New(pp)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (b *box) chkCustomer(t *testing.T) *stripe.Customer {
	t.Helper()
	cu, err := b.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	return cu
}

func (b *box) chkSession(t *testing.T, p *stripe.CheckoutSessionParams) *stripe.CheckoutSession {
	t.Helper()
	cs, err := b.sc.CheckoutSessions.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func paymentSession(customer, price string, qty int64) *stripe.CheckoutSessionParams {
	return &stripe.CheckoutSessionParams{
		Mode: stripe.String("payment"), Customer: stripe.String(customer),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(price), Quantity: stripe.Int64(qty)}},
		SuccessURL: stripe.String("https://app.example.com/payment/success?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL:  stripe.String("https://app.example.com/payment/cancelled"),
		Metadata:   map[string]string{"workspace_id": "ws_1"},
		PaymentIntentData: &stripe.CheckoutSessionPaymentIntentDataParams{
			Metadata: map[string]string{"workspace_id": "ws_1", "purpose": "checkout_credits"}},
		ClientReferenceID: stripe.String("ws_1"),
	}
}

func expandPI() *stripe.CheckoutSessionParams {
	return &stripe.CheckoutSessionParams{Expand: []*string{stripe.String("payment_intent")}}
}

func checkoutErr(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("want a Stripe error, got %v", err)
	}
	return se
}

func chkAfter(list []string, first string) []string {
	i := slices.Index(list, first)
	if i < 0 {
		return nil
	}
	return list[i:]
}

func TestCheckoutSessionAPI(t *testing.T) {
	b := newBox(t)
	cu := b.chkCustomer(t)
	once := b.chkPrice(t, 1500, "usd", "")
	monthly := b.chkPrice(t, 2900, "usd", "month")
	yen := b.chkPrice(t, 1000, "jpy", "")

	t.Run("CreateAnswersAnOpenSessionOfStripesShape", func(t *testing.T) {
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 2))
		shaped(t, "checkout.session", cs.LastResponse.RawJSON)
		if cs.Status != "open" || cs.PaymentStatus != "unpaid" || cs.AmountTotal != 3000 || cs.Currency != "usd" ||
			cs.URL != b.URL+"/checkout/"+cs.ID || cs.Customer.ID != cu.ID || cs.ClientReferenceID != "ws_1" ||
			cs.Metadata["workspace_id"] != "ws_1" || cs.PaymentIntent != nil || cs.Mode != "payment" {
			t.Fatalf("session %+v", cs)
		}
		if got := cs.ExpiresAt - cs.Created; got != 24*3600 {
			t.Errorf("expires_at is %ds after created, want 24 h", got)
		}
		got, err := b.sc.CheckoutSessions.Get(cs.ID, nil)
		if err != nil || got.ID != cs.ID || got.AmountTotal != 3000 {
			t.Fatalf("get: %+v %v", got, err)
		}
		shaped(t, "checkout.session", got.LastResponse.RawJSON)
	})

	t.Run("LineItemsAreListed", func(t *testing.T) {
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 3))
		it := b.sc.CheckoutSessions.ListLineItems(&stripe.CheckoutSessionListLineItemsParams{Session: stripe.String(cs.ID)})
		var items []*stripe.LineItem
		for it.Next() {
			items = append(items, it.LineItem())
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 || items[0].Price.ID != once.ID || items[0].Quantity != 3 || items[0].AmountTotal != 4500 {
			t.Fatalf("line items %+v", items)
		}
		var page struct{ Data []json.RawMessage }
		if err := json.Unmarshal(it.LineItemList().LastResponse.RawJSON, &page); err != nil || len(page.Data) != 1 {
			t.Fatalf("line items page: %v", err)
		}
		shaped(t, "item", []byte(page.Data[0]))
	})

	t.Run("ListFiltersByCustomerAndStatus", func(t *testing.T) {
		other := b.chkCustomer(t)
		mine := b.chkSession(t, paymentSession(other.ID, once.ID, 1))
		it := b.sc.CheckoutSessions.List(&stripe.CheckoutSessionListParams{Customer: stripe.String(other.ID), Status: stripe.String("open")})
		var ids []string
		for it.Next() {
			ids = append(ids, it.CheckoutSession().ID)
		}
		if !slices.Equal(ids, []string{mine.ID}) {
			t.Fatalf("list for %s: %v", other.ID, ids)
		}
	})

	invalid := []struct {
		name, param string
		status      int
		edit        func(p *stripe.CheckoutSessionParams)
	}{
		{"UnknownPrice", "line_items[0][price]", 404, func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Price = stripe.String("price_nope") }},
		{"RecurringPriceInPaymentMode", "line_items[0][price]", 400, func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Price = stripe.String(monthly.ID) }},
		{"OneTimePriceInSubscriptionMode", "line_items", 400, func(p *stripe.CheckoutSessionParams) {
			p.Mode = stripe.String("subscription")
			p.PaymentIntentData = nil
		}},
		{"MissingSuccessURL", "success_url", 400, func(p *stripe.CheckoutSessionParams) { p.SuccessURL = nil }},
		{"MissingQuantity", "line_items[0][quantity]", 400, func(p *stripe.CheckoutSessionParams) { p.LineItems[0].Quantity = nil }},
		{"MixedCurrencies", "line_items[1][price]", 400, func(p *stripe.CheckoutSessionParams) {
			p.LineItems = append(p.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(yen.ID), Quantity: stripe.Int64(1)})
		}},
		{"ExpiresInUnder30Minutes", "expires_at", 400, func(p *stripe.CheckoutSessionParams) {
			p.ExpiresAt = stripe.Int64(b.Now().Add(10 * time.Minute).Unix())
		}},
		{"ExpiresAfter24Hours", "expires_at", 400, func(p *stripe.CheckoutSessionParams) {
			p.ExpiresAt = stripe.Int64(b.Now().Add(25 * time.Hour).Unix())
		}},
		{"CustomerAndCustomerEmail", "customer_email", 400, func(p *stripe.CheckoutSessionParams) {
			p.CustomerEmail = stripe.String("x@example.com")
		}},
		{"UnknownCustomer", "customer", 404, func(p *stripe.CheckoutSessionParams) { p.Customer = stripe.String("cus_nope") }},
		{"PromotionCodesAndDiscounts", "allow_promotion_codes", 400, func(p *stripe.CheckoutSessionParams) {
			p.AllowPromotionCodes = stripe.Bool(true)
			p.Discounts = []*stripe.CheckoutSessionDiscountParams{{Coupon: stripe.String("co_x")}}
		}},
	}
	for _, tc := range invalid {
		t.Run("Refuses"+tc.name, func(t *testing.T) {
			p := paymentSession(cu.ID, once.ID, 1)
			tc.edit(p)
			_, err := b.sc.CheckoutSessions.New(p)
			se := checkoutErr(t, err)
			if se.HTTPStatusCode != tc.status || se.Param != tc.param {
				t.Fatalf("status %d param %q (%s), want %d %q", se.HTTPStatusCode, se.Param, se.Msg, tc.status, tc.param)
			}
		})
	}

	unimplemented := []struct {
		name string
		edit func(p *stripe.CheckoutSessionParams)
	}{
		{"SetupMode", func(p *stripe.CheckoutSessionParams) {
			p.Mode = stripe.String("setup")
			p.LineItems = nil
			p.PaymentIntentData = nil
		}},
		{"AutomaticTax", func(p *stripe.CheckoutSessionParams) {
			p.AutomaticTax = &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}
		}},
		{"PriceData", func(p *stripe.CheckoutSessionParams) {
			p.LineItems[0].PriceData = &stripe.CheckoutSessionLineItemPriceDataParams{Currency: stripe.String("usd"), UnitAmount: stripe.Int64(5), Product: stripe.String("prod_x")}
		}},
		{"OtherPaymentMethodTypes", func(p *stripe.CheckoutSessionParams) {
			p.PaymentMethodTypes = stripe.StringSlice([]string{"card", "sepa_debit"})
		}},
	}
	for _, tc := range unimplemented {
		t.Run("RefusesByName"+tc.name, func(t *testing.T) {
			p := paymentSession(cu.ID, once.ID, 1)
			tc.edit(p)
			_, err := b.sc.CheckoutSessions.New(p)
			se := checkoutErr(t, err)
			if se.HTTPStatusCode != 501 || !strings.Contains(se.Msg, "does not implement") {
				t.Fatalf("status %d: %s", se.HTTPStatusCode, se.Msg)
			}
		})
	}

	t.Run("ExpireEndsAnOpenSessionOnce", func(t *testing.T) {
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 1))
		got, err := b.sc.CheckoutSessions.Expire(cs.ID, nil)
		if err != nil || got.Status != "expired" || got.URL != "" {
			t.Fatalf("expire: %+v %v", got, err)
		}
		shaped(t, "checkout.session", got.LastResponse.RawJSON)
		_, err = b.sc.CheckoutSessions.Expire(cs.ID, nil)
		if se := checkoutErr(t, err); se.HTTPStatusCode != 400 {
			t.Fatalf("second expire: %v", err)
		}
		if code, _, _ := chkGet(t, cs.URL); code != http.StatusGone {
			t.Errorf("the page of an expired session answers %d, want 410", code)
		}
		if evs := b.delivered(t); evs[len(evs)-1] != "checkout.session.expired" {
			t.Errorf("events %v", evs)
		}
	})
}

func TestCheckoutPageInPaymentMode(t *testing.T) {
	b := newBox(t)
	cu := b.chkCustomer(t)
	once := b.chkPrice(t, 1500, "usd", "")

	t.Run("ShowsItemsAndTotalInTheCurrencysUnits", func(t *testing.T) {
		yen := b.chkPrice(t, 1000, "jpy", "")
		for _, tc := range []struct {
			price *stripe.Price
			qty   int64
			want  string
		}{{once, 2, "$30.00"}, {yen, 3, "¥3,000"}} {
			cs := b.chkSession(t, paymentSession(cu.ID, tc.price.ID, tc.qty))
			code, _, body := chkGet(t, cs.URL)
			if code != 200 || !strings.Contains(body, `id="total">`+tc.want+`<`) || !strings.Contains(body, "4242 4242 4242 4242") ||
				!strings.Contains(body, `name="card_number"`) || strings.Contains(body, "<script") {
				t.Fatalf("page of %d×%d %s (want total %s): %d\n%s", tc.qty, tc.price.UnitAmount, tc.price.Currency, tc.want, code, body)
			}
		}
	})

	t.Run("PayingWith4242CompletesAndRedirectsWithTheSessionID", func(t *testing.T) {
		b.delivered(t)
		before := len(b.recv.types())
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 2))
		code, loc, body := chkSubmit(t, cs.URL, chkPay("4242 4242 4242 4242"))
		if code != http.StatusSeeOther || loc != "https://app.example.com/payment/success?session_id="+cs.ID {
			t.Fatalf("pay: %d %q\n%s", code, loc, body)
		}
		got, err := b.sc.CheckoutSessions.Get(cs.ID, expandPI())
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "checkout.session", got.LastResponse.RawJSON)
		if got.Status != "complete" || got.PaymentStatus != "paid" || got.PaymentIntent == nil || got.Customer.ID != cu.ID || got.URL != "" {
			t.Fatalf("session after paying: %+v", got)
		}
		pi := got.PaymentIntent
		if pi.Status != "succeeded" || pi.Amount != 3000 || pi.Metadata["purpose"] != "checkout_credits" || pi.Customer.ID != cu.ID {
			t.Fatalf("payment intent %+v", pi)
		}
		evs := b.delivered(t)[before:]
		want := []string{"payment_intent.created", "charge.succeeded", "payment_intent.succeeded", "checkout.session.completed"}
		if !slices.Equal(evs, want) {
			t.Fatalf("events %v, want %v", evs, want)
		}
		var completed stripe.CheckoutSession
		b.recv.mu.Lock()
		raw := b.recv.events[len(b.recv.events)-1].Data.Raw
		b.recv.mu.Unlock()
		if err := json.Unmarshal(raw, &completed); err != nil || completed.ID != cs.ID || completed.Status != "complete" ||
			completed.PaymentIntent.ID != pi.ID || completed.Metadata["workspace_id"] != "ws_1" || completed.ClientReferenceID != "ws_1" {
			t.Fatalf("checkout.session.completed carries %+v (%v)", completed, err)
		}
	})

	t.Run("ADeclinedCardShowsTheMessageAndLeavesTheSessionOpen", func(t *testing.T) {
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 1))
		code, _, body := chkSubmit(t, cs.URL, chkPay("4000000000009995"))
		if code != http.StatusPaymentRequired || !strings.Contains(body, "Your card has insufficient funds.") {
			t.Fatalf("declined: %d\n%s", code, body)
		}
		got, _ := b.sc.CheckoutSessions.Get(cs.ID, expandPI())
		if got.Status != "open" || got.PaymentStatus != "unpaid" {
			t.Fatalf("session after a decline: %s %s", got.Status, got.PaymentStatus)
		}
		if pi := got.PaymentIntent; pi == nil || pi.Status != "requires_payment_method" || pi.AmountReceived != 0 {
			t.Fatalf("the declined payment: %+v", pi)
		}
		// The same session can then be paid with another card.
		if code, loc, _ := chkSubmit(t, cs.URL, chkPay("4242424242424242")); code != http.StatusSeeOther || !strings.Contains(loc, cs.ID) {
			t.Fatalf("retry with 4242: %d %q", code, loc)
		}
		got, _ = b.sc.CheckoutSessions.Get(cs.ID, nil)
		if got.Status != "complete" || got.PaymentIntent.ID == "" {
			t.Fatalf("after retry %s", got.Status)
		}
	})

	t.Run("AnUnknownCardNumberShowsThePageAgain", func(t *testing.T) {
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 1))
		code, _, body := chkSubmit(t, cs.URL, chkPay("1234 5678"))
		if code != http.StatusBadRequest || !strings.Contains(body, "does not know the card number") || !strings.Contains(body, `name="card_number"`) {
			t.Fatalf("unknown card: %d\n%s", code, body)
		}
	})

	t.Run("CancelGoesBackToCancelURL", func(t *testing.T) {
		cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 1))
		code, loc, _ := chkSubmit(t, cs.URL, url.Values{"action": {"cancel"}})
		if code != http.StatusSeeOther || loc != "https://app.example.com/payment/cancelled" {
			t.Fatalf("cancel: %d %q", code, loc)
		}
		if _, _, body := chkGet(t, cs.URL); !strings.Contains(body, `href="https://app.example.com/payment/cancelled"`) {
			t.Errorf("the page has no link back to cancel_url")
		}
		if got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil); got.Status != "open" {
			t.Errorf("cancelling left the session %s, want open (it expires later)", got.Status)
		}
	})

	threeDS := []struct {
		name   string
		passed bool
		want   string
	}{{"Passed", true, "complete"}, {"Failed", false, "open"}}
	for _, tc := range threeDS {
		t.Run("ThreeDSecure"+tc.name, func(t *testing.T) {
			cs := b.chkSession(t, paymentSession(cu.ID, once.ID, 1))
			code, loc, body := chkSubmit(t, cs.URL, chkPay("4000002760003184"))
			if code != http.StatusSeeOther || !strings.HasPrefix(loc, b.URL+"/3ds/pi_") {
				t.Fatalf("3DS card: %d %q\n%s", code, loc, body)
			}
			piID := strings.TrimPrefix(loc, b.URL+"/3ds/")
			if got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil); got.Status != "open" {
				t.Fatalf("session before the challenge: %s", got.Status)
			}
			if err := b.locked(func(c *call) error { return b.completeAuthentication(c, b.get("payment_intent", piID), tc.passed) }); err != nil {
				t.Fatal(err)
			}
			got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil)
			if string(got.Status) != tc.want {
				t.Fatalf("session after the challenge %s: %s, want %s", tc.name, got.Status, tc.want)
			}
			code, loc, body = chkGet(t, cs.URL)
			if tc.passed && (code != http.StatusSeeOther || !strings.Contains(loc, "session_id="+cs.ID)) {
				t.Fatalf("back from the challenge: %d %q", code, loc)
			}
			if !tc.passed && (code != 200 || !strings.Contains(body, "failed authentication")) {
				t.Fatalf("back from a failed challenge: %d\n%s", code, body)
			}
		})
	}
}

func TestCheckoutSessionsExpire(t *testing.T) {
	b := newBox(t)
	cu := b.chkCustomer(t)
	once := b.chkPrice(t, 1500, "usd", "")
	p := paymentSession(cu.ID, once.ID, 1)
	p.ExpiresAt = stripe.Int64(b.Now().Add(time.Hour).Unix())
	cs := b.chkSession(t, p)
	declined := b.chkSession(t, paymentSession(cu.ID, once.ID, 1))
	chkSubmit(t, declined.URL, chkPay("4000000000000002"))

	if _, err := b.Advance(30 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil); got.Status != "open" {
		t.Fatalf("half way to expires_at the session is %s", got.Status)
	}
	if _, err := b.Advance(31 * time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Run("AtExpiresAt", func(t *testing.T) {
		got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil)
		if got.Status != "expired" || got.URL != "" {
			t.Fatalf("after expires_at: %s %q", got.Status, got.URL)
		}
		if code, _, _ := chkSubmit(t, cs.URL, chkPay("4242424242424242")); code != http.StatusConflict {
			t.Fatalf("paying an expired session answered %d", code)
		}
	})
	t.Run("AfterADayWithItsPaymentIntentCanceled", func(t *testing.T) {
		if _, err := b.Advance(24 * time.Hour); err != nil {
			t.Fatal(err)
		}
		got, _ := b.sc.CheckoutSessions.Get(declined.ID, nil)
		if got.Status != "expired" {
			t.Fatalf("a day later: %s", got.Status)
		}
		got, _ = b.sc.CheckoutSessions.Get(declined.ID, expandPI())
		if got.PaymentIntent == nil || got.PaymentIntent.Status != "canceled" {
			t.Fatalf("its payment intent: %+v", got.PaymentIntent)
		}
		evs := b.delivered(t)
		if n := strings.Count(strings.Join(evs, ","), "checkout.session.expired"); n != 2 {
			t.Fatalf("%d checkout.session.expired events: %v", n, evs)
		}
		if tail := chkAfter(evs, "payment_intent.canceled"); len(tail) < 2 || tail[1] != "checkout.session.expired" {
			t.Fatalf("events %v", evs)
		}
	})
}

func TestCheckoutCustomerCreationInPaymentMode(t *testing.T) {
	b := newBox(t)
	once := b.chkPrice(t, 1500, "usd", "")
	for _, tc := range []struct {
		name, creation string
		wantCustomer   bool
	}{{"GuestByDefault", "", false}, {"AlwaysCreatesOne", "always", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := paymentSession("", once.ID, 1)
			p.Customer = nil
			p.CustomerEmail = stripe.String("guest@example.com")
			if tc.creation != "" {
				p.CustomerCreation = stripe.String(tc.creation)
			}
			cs := b.chkSession(t, p)
			if code, _, body := chkSubmit(t, cs.URL, chkPay("4242424242424242")); code != http.StatusSeeOther {
				t.Fatalf("pay: %d\n%s", code, body)
			}
			got, _ := b.sc.CheckoutSessions.Get(cs.ID, nil)
			if got.Status != "complete" || got.CustomerDetails == nil || got.CustomerDetails.Email != "guest@example.com" || (got.Customer != nil) != tc.wantCustomer {
				t.Fatalf("session %s, customer %v, details %+v", got.Status, got.Customer, got.CustomerDetails)
			}
			if tc.wantCustomer {
				cu, err := b.sc.Customers.Get(got.Customer.ID, nil)
				if err != nil || cu.Email != "guest@example.com" {
					t.Fatalf("customer %+v %v", cu, err)
				}
			}
		})
	}
}
