package sandbox

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// plans are the prices the billing tests subscribe to.
type plans struct {
	basic, pro, seat, oneTime, yearly string
}

func (b *box) plans(t *testing.T) plans {
	t.Helper()
	prod, err := b.sc.Products.New(&stripe.ProductParams{Name: stripe.String("Pro")})
	if err != nil {
		t.Fatal(err)
	}
	price := func(amount int64, interval string) string {
		p := &stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(amount), Currency: stripe.String("usd")}
		if interval != "" {
			p.Recurring = &stripe.PriceRecurringParams{Interval: stripe.String(interval)}
		}
		pr, err := b.sc.Prices.New(p)
		if err != nil {
			t.Fatal(err)
		}
		return pr.ID
	}
	return plans{basic: price(1000, "month"), pro: price(3000, "month"), seat: price(500, "month"),
		oneTime: price(5000, ""), yearly: price(10000, "year")}
}

// customer makes a customer (on a test clock when clock != "") whose
// default payment method for invoices is a new card from the test token
// (none for ""); it returns the customer's and the card's ids.
func (b *box) customer(t *testing.T, token, clock string) (string, string) {
	t.Helper()
	p := &stripe.CustomerParams{Email: stripe.String("owner@example.com")}
	if clock != "" {
		p.TestClock = stripe.String(clock)
	}
	cu, err := b.sc.Customers.New(p)
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		return cu.ID, ""
	}
	return cu.ID, b.card(t, cu.ID, token)
}

// card attaches a new card from the test token to the customer and makes
// it the customer's default for invoices.
func (b *box) card(t *testing.T, customer, token string) string {
	t.Helper()
	var id string
	err := b.locked(func(c *call) error {
		pm, e := b.attachPaymentMethod(c, token, customer)
		if e != nil {
			return e
		}
		id = str(pm["id"])
		cu := b.get("customer", customer)
		if e := b.setDefaultPaymentMethod(c, cu, id); e != nil {
			return e
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// only keeps the events whose types are in keep, in order.
func only(events []string, keep ...string) []string {
	var out []string
	for _, e := range events {
		if slices.Contains(keep, e) {
			out = append(out, e)
		}
	}
	return out
}

func eventsAre(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
}

func stripeErrStatus(t *testing.T, err error, status int) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != status {
		t.Fatalf("got %v, want a %d Stripe error", err, status)
	}
	return se
}

func items(prices ...string) []*stripe.SubscriptionItemsParams {
	var out []*stripe.SubscriptionItemsParams
	for _, p := range prices {
		out = append(out, &stripe.SubscriptionItemsParams{Price: stripe.String(p)})
	}
	return out
}

func (b *box) invoice(t *testing.T, id string) *stripe.Invoice {
	t.Helper()
	inv, err := b.sc.Invoices.Get(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// subscribe starts a subscription of customer to price.
func (b *box) subscribe(t *testing.T, customer, price string) *stripe.Subscription {
	t.Helper()
	sub, err := b.sc.Subscriptions.New(&stripe.SubscriptionParams{Customer: stripe.String(customer), Items: items(price)})
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func (b *box) sub(t *testing.T, id string) *stripe.Subscription {
	t.Helper()
	p := &stripe.SubscriptionParams{}
	p.AddExpand("latest_invoice")
	sub, err := b.sc.Subscriptions.Get(id, p)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
