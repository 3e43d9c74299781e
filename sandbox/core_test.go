package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
)

func TestCatalogByLookupKey(t *testing.T) {
	b := newBox(t)
	prod, err := b.sc.Products.New(&stripe.ProductParams{Name: stripe.String("Pro"),
		Metadata: map[string]string{"plan": "pro", "feature_set": "projects,sso"}})
	if err != nil {
		t.Fatal(err)
	}
	shaped(t, "product", prod.LastResponse.RawJSON)
	pp := &stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(2900), Currency: stripe.String("usd"),
		LookupKey: stripe.String("pro_monthly"), Recurring: &stripe.PriceRecurringParams{Interval: stripe.String("month")}}
	first, err := b.sc.Prices.New(pp)
	if err != nil {
		t.Fatal(err)
	}
	shaped(t, "price", first.LastResponse.RawJSON)

	t.Run("TakenLookupKeyIsRefusedWithoutTransfer", func(t *testing.T) {
		_, err := b.sc.Prices.New(pp)
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 400 || se.Param != "lookup_key" {
			t.Fatalf("second price with the same lookup key: %v", err)
		}
	})

	pp.UnitAmount = stripe.Int64(3100)
	pp.TransferLookupKey = stripe.Bool(true)
	second, err := b.sc.Prices.New(pp)
	if err != nil {
		t.Fatal(err)
	}
	lp := &stripe.PriceListParams{LookupKeys: stripe.StringSlice([]string{"pro_monthly", "nobody"}), Active: stripe.Bool(true)}
	lp.AddExpand("data.product")
	it := b.sc.Prices.List(lp)
	var got []*stripe.Price
	for it.Next() {
		got = append(got, it.Price())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != second.ID || got[0].UnitAmount != 3100 || got[0].Product.Name != "Pro" ||
		got[0].Product.Metadata["plan"] != "pro" {
		t.Fatalf("lookup of pro_monthly after the transfer: %+v", got)
	}
	old, err := b.sc.Prices.Get(first.ID, nil)
	if err != nil || old.LookupKey != "" {
		t.Fatalf("the first price keeps lookup key %q (%v) after the transfer", old.LookupKey, err)
	}
	if got := b.delivered(t); !slices.Equal(got, []string{"product.created", "price.created", "price.updated", "price.created"}) {
		t.Fatalf("events %v", got)
	}
}

func TestIdempotencyAsStripeDoesIt(t *testing.T) {
	b := newBox(t)
	params := func(email string) *stripe.CustomerParams {
		p := &stripe.CustomerParams{Email: stripe.String(email)}
		p.SetIdempotencyKey("key-1")
		return p
	}
	a, err := b.sc.Customers.New(params("a@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("SameKeySameParamsReturnsTheFirstAnswer", func(t *testing.T) {
		again, err := b.sc.Customers.New(params("a@example.com"))
		if err != nil || again.ID != a.ID {
			t.Fatalf("replay gave %v, %v; want %s", again, err, a.ID)
		}
		if again.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("a replay is not marked Idempotent-Replayed")
		}
	})
	t.Run("SameKeyOtherParamsIsAnIdempotencyError", func(t *testing.T) {
		_, err := b.sc.Customers.New(params("b@example.com"))
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeIdempotency {
			t.Fatalf("reused key with other params: %v", err)
		}
	})
	n := 0
	for it := b.sc.Customers.List(nil); it.Next(); n++ {
	}
	if n != 1 {
		t.Fatalf("%d customers exist, want 1", n)
	}
}

// Stripe keeps an idempotency key for 24 hours: a day later the same key
// is a new request.
func TestIdempotencyKeysExpireAfterADay(t *testing.T) {
	var wall atomic.Int64
	wall.Store(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).Unix())
	b := newBox(t, func(o *Options) { o.Now = func() time.Time { return time.Unix(wall.Load(), 0) } })
	create := func(email string) (*stripe.Customer, error) {
		p := &stripe.CustomerParams{Email: stripe.String(email)}
		p.SetIdempotencyKey("daily")
		return b.sc.Customers.New(p)
	}
	first, err := create("a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	wall.Add(23 * 3600)
	if again, err := create("a@example.com"); err != nil || again.ID != first.ID {
		t.Fatalf("23 hours later the key did not replay: %v %v", again, err)
	}
	wall.Add(2 * 3600)
	second, err := create("b@example.com")
	if err != nil || second.ID == first.ID {
		t.Fatalf("25 hours later the key still held: %v %v", second, err)
	}
}

func TestRequestsAreCheckedAgainstTheSpec(t *testing.T) {
	b := newBox(t)
	do := func(method, path, body string, header map[string]string) (int, string) {
		req, _ := http.NewRequest(method, b.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk_test_x")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	cases := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		says                     string
	}{
		{"UnknownParameter", "POST", "/v1/customers", "favourite_colour=blue", nil, 400, "favourite_colour"},
		{"WrongType", "POST", "/v1/prices", "product=prod_x&currency=usd&unit_amount=ten", nil, 400, "unit_amount"},
		{"UnimplementedEndpointIsRefusedByName", "POST", "/v1/transfers", "amount=1&currency=usd&destination=acct_1", nil, 501, "POST /v1/transfers"},
		{"NotStripeAtAll", "GET", "/v1/nothing_here", "", nil, 404, "Unrecognized request URL"},
		{"CustomerBalanceIsRefusedByName", "POST", "/v1/customers", "balance=500", nil, 501, "the parameter balance of POST /v1/customers"},
		{"CustomerCouponIsRefusedByName", "POST", "/v1/customers", "coupon=c1", nil, 501, "the parameter coupon"},
		{"TransformQuantityIsRefusedByName", "POST", "/v1/prices", "product=prod_x&currency=usd&unit_amount=10&transform_quantity[divide_by]=10&transform_quantity[round]=up", nil, 501, "transform_quantity"},
		{"WebhookEndpointOfAnotherVersionIsRefused", "POST", "/v1/webhook_endpoints", "url=https://example.com/hook&enabled_events[]=*&api_version=2022-11-15", nil, 501, "2022-11-15"},
		{"OtherAPIVersion", "GET", "/v1/customers", "", map[string]string{"Stripe-Version": "2024-06-20"}, 400, APIVersion},
		{"UnknownObject", "GET", "/v1/customers/cus_nope", "", nil, 404, "No such customer: 'cus_nope'"},
		{"LiveKey", "GET", "/v1/customers", "", map[string]string{"Authorization": "Bearer sk_live_x"}, 401, "live keys"},
		{"NoKey", "GET", "/v1/customers", "", map[string]string{"Authorization": ""}, 401, "API key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(tc.method, tc.path, tc.body, tc.header)
			if status != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("%s %s: %d %s; want %d mentioning %q", tc.method, tc.path, status, body, tc.status, tc.says)
			}
			var e struct {
				Error struct{ Type, Message string }
			}
			if json.Unmarshal([]byte(body), &e) != nil || e.Error.Type == "" || e.Error.Message == "" {
				t.Fatalf("not a Stripe error body: %s", body)
			}
		})
	}
}

func TestWebhooksAreSignedAndRetried(t *testing.T) {
	b := newBox(t)
	b.recv.mu.Lock()
	b.recv.fail = 2
	b.recv.mu.Unlock()
	if _, err := b.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("a@example.com")}); err != nil {
		t.Fatal(err)
	}
	if got := b.delivered(t); !slices.Equal(got, []string{"customer.created"}) {
		t.Fatalf("events %v", got)
	}
	if b.recv.tries != 3 {
		t.Fatalf("%d delivery attempts, want 3 (two refused, then delivered)", b.recv.tries)
	}
}

// Under Chaos every event is delivered twice, and deliveries are jittered
// so that their order is not the order of the events.
func TestChaosDeliversEachEventTwiceInJitteredOrder(t *testing.T) {
	b := newBox(t, func(o *Options) { o.Chaos = true })
	for range 20 {
		if _, err := b.sc.Customers.New(&stripe.CustomerParams{}); err != nil {
			t.Fatal(err)
		}
	}
	b.delivered(t)
	b.recv.mu.Lock()
	defer b.recv.mu.Unlock()
	seen := map[string]int{}
	var firsts []string
	for _, ev := range b.recv.events {
		if seen[ev.ID]++; seen[ev.ID] == 1 {
			firsts = append(firsts, ev.ID)
		}
	}
	if len(seen) != 20 {
		t.Fatalf("%d distinct events delivered, want 20", len(seen))
	}
	for id, n := range seen {
		if n != 2 {
			t.Fatalf("event %s delivered %d times, want twice", id, n)
		}
	}
	// 20 events made within milliseconds, each delivery jittered by up to
	// half a second: in order by chance about once in 20! runs.
	lp := &stripe.EventListParams{}
	lp.Limit = stripe.Int64(100)
	var emitted []string
	for it := b.sc.Events.List(lp); it.Next(); {
		emitted = append([]string{it.Event().ID}, emitted...)
	}
	if slices.Equal(firsts, emitted) {
		t.Fatal("under Chaos the first deliveries came in the order of the events")
	}
}

func TestStateSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	b := newBox(t, func(o *Options) { o.DataDir = dir })
	cu, err := b.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("a@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Advance(48 * time.Hour); err != nil {
		t.Fatal(err)
	}
	b.delivered(t)
	clock := b.Now()
	b.Close()
	again := newBox(t, func(o *Options) { o.DataDir = dir })
	got, err := again.sc.Customers.Get(cu.ID, nil)
	if err != nil || got.Email != "a@example.com" {
		t.Fatalf("after a restart: %v, %v", got, err)
	}
	if d := again.Now().Sub(clock); d < 0 || d > time.Minute {
		t.Fatalf("the advanced clock moved by %s across the restart", d)
	}
}

// A refused request changes nothing and emits nothing, even when the
// handler had begun to change objects before it found the problem.
func TestARefusedRequestChangesNothing(t *testing.T) {
	b := newBox(t)
	prod, err := b.sc.Products.New(&stripe.ProductParams{Name: stripe.String("Pro")})
	if err != nil {
		t.Fatal(err)
	}
	first, err := b.sc.Prices.New(&stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(100),
		Currency: stripe.String("usd"), LookupKey: stripe.String("pro")})
	if err != nil {
		t.Fatal(err)
	}
	before := len(b.delivered(t))

	t.Run("TransferWithBadMetadataKeepsTheLookupKey", func(t *testing.T) {
		_, err := b.sc.Prices.New(&stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(200),
			Currency: stripe.String("usd"), LookupKey: stripe.String("pro"), TransferLookupKey: stripe.Bool(true),
			Metadata: map[string]string{strings.Repeat("k", 41): "v"}})
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 400 {
			t.Fatalf("a metadata key of 41 characters: %v", err)
		}
		got, err := b.sc.Prices.Get(first.ID, nil)
		if err != nil || got.LookupKey != "pro" {
			t.Fatalf("the refused transfer took the lookup key: %q %v", got.LookupKey, err)
		}
	})
	t.Run("CustomerWithADeclinedCardIsNotCreated", func(t *testing.T) {
		_, err := b.sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("x@example.com"),
			PaymentMethod: stripe.String("pm_card_chargeDeclined")})
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 402 {
			t.Fatalf("a customer with a declined card: %v", err)
		}
		n := 0
		for it := b.sc.Customers.List(nil); it.Next(); n++ {
		}
		if n != 0 {
			t.Fatalf("%d customers exist after a refused create", n)
		}
	})
	if got := b.delivered(t); len(got) != before {
		t.Fatalf("refused requests emitted %v", got[before:])
	}
}

// A delivery the endpoint keeps refusing is retried for three days, as
// Stripe does, then dropped, so that a dead endpoint does not hold the
// queue for ever.
func TestAFailingDeliveryIsDroppedAfterThreeDays(t *testing.T) {
	var wall atomic.Int64
	wall.Store(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).UnixMilli())
	b := newBox(t, func(o *Options) { o.Now = func() time.Time { return time.UnixMilli(wall.Load()) } })
	b.recv.mu.Lock()
	b.recv.fail = 1 << 30
	b.recv.mu.Unlock()
	if _, err := b.sc.Customers.New(&stripe.CustomerParams{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := b.WaitDelivered(ctx); err == nil {
		t.Fatal("a refused delivery counted as delivered")
	}
	wall.Add((72*time.Hour + time.Minute).Milliseconds())
	b.kick()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := b.WaitDelivered(ctx2); err != nil {
		t.Fatalf("three days on, the delivery is still queued: %v", err)
	}
	if len(b.recv.types()) != 0 {
		t.Fatal("the receiver accepted an event it refused")
	}
}

func TestTestClocks(t *testing.T) {
	b := newBox(t)
	start := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	tc, err := b.sc.TestHelpersTestClocks.New(&stripe.TestHelpersTestClockParams{FrozenTime: stripe.Int64(start)})
	if err != nil {
		t.Fatal(err)
	}
	shaped(t, "test_helpers.test_clock", tc.LastResponse.RawJSON)
	cu, err := b.sc.Customers.New(&stripe.CustomerParams{TestClock: stripe.String(tc.ID)})
	if err != nil || cu.Created != start {
		t.Fatalf("a customer on the clock is created at %d (%v); want the clock's %d", cu.Created, err, start)
	}
	t.Run("AdvancesOnlyForward", func(t *testing.T) {
		_, err := b.sc.TestHelpersTestClocks.Advance(tc.ID, &stripe.TestHelpersTestClockAdvanceParams{FrozenTime: stripe.Int64(start - 1)})
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 400 {
			t.Fatalf("advancing backwards: %v", err)
		}
		got, err := b.sc.TestHelpersTestClocks.Advance(tc.ID, &stripe.TestHelpersTestClockAdvanceParams{FrozenTime: stripe.Int64(start + 3600)})
		if err != nil || got.FrozenTime != start+3600 || got.Status != "ready" {
			t.Fatalf("advance: %+v %v", got, err)
		}
	})
	t.Run("DeletingAClockWithCustomersIsRefused", func(t *testing.T) {
		_, err := b.sc.TestHelpersTestClocks.Del(tc.ID, nil)
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != 501 {
			t.Fatalf("deleting a clock with a customer: %v", err)
		}
		empty, err := b.sc.TestHelpersTestClocks.New(&stripe.TestHelpersTestClockParams{FrozenTime: stripe.Int64(start)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.sc.TestHelpersTestClocks.Del(empty.ID, nil); err != nil {
			t.Fatalf("deleting an empty clock: %v", err)
		}
	})
}
