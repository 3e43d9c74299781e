package sandbox

import (
	"slices"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// paid makes a succeeded payment of amount cents and waits for its events.
func (b *box) paid(t *testing.T, amount int64) *stripe.PaymentIntent {
	t.Helper()
	cu := b.newCustomer(t)
	pi, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(amount), Currency: stripe.String("usd"),
		Customer: stripe.String(cu.ID), PaymentMethod: stripe.String("pm_card_visa"), Confirm: stripe.Bool(true),
		PaymentMethodTypes: stripe.StringSlice([]string{"card"}), Metadata: map[string]string{"workspace_id": "w1"}})
	if err != nil || pi.Status != "succeeded" {
		t.Fatalf("payment: %v %v", pi, err)
	}
	b.delivered(t)
	return pi
}

// lastEvent returns the last delivered event of a type.
func (b *box) lastEvent(t *testing.T, typ string) stripe.Event {
	t.Helper()
	b.delivered(t)
	b.recv.mu.Lock()
	defer b.recv.mu.Unlock()
	for i := len(b.recv.events) - 1; i >= 0; i-- {
		if string(b.recv.events[i].Type) == typ {
			return b.recv.events[i]
		}
	}
	t.Fatalf("no %s event", typ)
	return stripe.Event{}
}

func TestRefunds(t *testing.T) {
	b := newBox(t)

	t.Run("FullRefundByDefaultAndChargeRefunded", func(t *testing.T) {
		pi := b.paid(t, 5000)
		n := b.mark(t)
		re, err := b.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(pi.ID), Reason: stripe.String("requested_by_customer"),
			Metadata: map[string]string{"refunded_by": "u1"}})
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "refund", re.LastResponse.RawJSON)
		if re.Amount != 5000 || re.Status != "succeeded" || re.PaymentIntent.ID != pi.ID || re.Charge.ID != pi.LatestCharge.ID ||
			re.Reason != "requested_by_customer" || re.Metadata["refunded_by"] != "u1" || re.Currency != "usd" {
			t.Fatalf("refund %+v", re)
		}
		plain, err := b.sc.Charges.Get(pi.LatestCharge.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if plain.Refunds != nil {
			t.Fatal("a charge lists its refunds without expand[]=refunds (API 2022-11-15 and later do not)")
		}
		ch, err := b.sc.Charges.Get(pi.LatestCharge.ID, &stripe.ChargeParams{Expand: []*string{stripe.String("refunds")}})
		if err != nil {
			t.Fatal(err)
		}
		shaped(t, "charge", ch.LastResponse.RawJSON)
		if ch.AmountRefunded != 5000 || !ch.Refunded || ch.Refunds == nil || len(ch.Refunds.Data) != 1 || ch.Refunds.Data[0].ID != re.ID {
			t.Fatalf("charge after refund: refunded %d %v, refunds %+v", ch.AmountRefunded, ch.Refunded, ch.Refunds)
		}
		// At 2023-10-16 a refund of a charge is announced by charge.refunded
		// alone (refund.created is for refunds without a charge).
		if ev := b.since(t, n); !slices.Equal(ev, []string{"charge.refunded"}) {
			t.Fatalf("events %v", ev)
		}
		ev := b.lastEvent(t, "charge.refunded")
		var got stripe.Charge
		if err := got.UnmarshalJSON(ev.Data.Raw); err != nil {
			t.Fatal(err)
		}
		// What our API reads from it: the payment intent, the amount
		// refunded and the metadata naming the workspace.
		if got.PaymentIntent == nil || got.PaymentIntent.ID != pi.ID || got.AmountRefunded != 5000 || got.Metadata["workspace_id"] != "w1" {
			t.Fatalf("charge.refunded carries %+v", got)
		}
		shaped(t, "charge", ev.Data.Raw)
		if ev.Data.PreviousAttributes["amount_refunded"] != float64(0) {
			t.Fatalf("previous_attributes %v", ev.Data.PreviousAttributes)
		}
		t.Run("ASecondRefundIsChargeAlreadyRefunded", func(t *testing.T) {
			_, err := b.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(pi.ID)})
			wantErr(t, err, 400, stripe.ErrorCodeChargeAlreadyRefunded, "")
		})
	})

	t.Run("PartialRefundsAddUpToTheWhole", func(t *testing.T) {
		pi := b.paid(t, 3000)
		first, err := b.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(pi.ID), Amount: stripe.Int64(1000)})
		if err != nil {
			t.Fatal(err)
		}
		ch, _ := b.sc.Charges.Get(pi.LatestCharge.ID, nil)
		if ch.AmountRefunded != 1000 || ch.Refunded {
			t.Fatalf("after a partial refund: %d %v", ch.AmountRefunded, ch.Refunded)
		}
		t.Run("MoreThanRemainsIsRefused", func(t *testing.T) {
			_, err := b.sc.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(pi.ID), Amount: stripe.Int64(2001)})
			wantErr(t, err, 400, "", "amount")
		})
		rest, err := b.sc.Refunds.New(&stripe.RefundParams{Charge: stripe.String(pi.LatestCharge.ID)})
		if err != nil || rest.Amount != 2000 {
			t.Fatalf("rest: %v %v", rest, err)
		}
		ch, _ = b.sc.Charges.Get(pi.LatestCharge.ID, &stripe.ChargeParams{Expand: []*string{stripe.String("refunds")}})
		if ch.AmountRefunded != 3000 || !ch.Refunded || len(ch.Refunds.Data) != 2 {
			t.Fatalf("after both: %d %v %d", ch.AmountRefunded, ch.Refunded, len(ch.Refunds.Data))
		}
		var listed []string
		it := b.sc.Refunds.List(&stripe.RefundListParams{PaymentIntent: stripe.String(pi.ID)})
		for it.Next() {
			listed = append(listed, it.Refund().ID)
		}
		if !slices.Equal(listed, []string{rest.ID, first.ID}) {
			t.Fatalf("refunds of the intent %v, want newest first", listed)
		}
		got, err := b.sc.Refunds.Get(first.ID, nil)
		if err != nil || got.Amount != 1000 {
			t.Fatalf("get: %v %v", got, err)
		}
		shaped(t, "refund", got.LastResponse.RawJSON)
	})

	t.Run("CreateIsIdempotent", func(t *testing.T) {
		pi := b.paid(t, 4000)
		n := b.mark(t)
		p := func() *stripe.RefundParams {
			p := &stripe.RefundParams{PaymentIntent: stripe.String(pi.ID), Amount: stripe.Int64(1000)}
			p.SetIdempotencyKey("re-key")
			return p
		}
		a, err := b.sc.Refunds.New(p())
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.sc.Refunds.New(p())
		if err != nil || again.ID != a.ID {
			t.Fatalf("replay: %v %v", again, err)
		}
		ch, _ := b.sc.Charges.Get(pi.LatestCharge.ID, nil)
		if ch.AmountRefunded != 1000 {
			t.Fatalf("a replay refunded again: %d", ch.AmountRefunded)
		}
		if ev := b.since(t, n); !slices.Equal(ev, []string{"charge.refunded"}) {
			t.Fatalf("events %v", ev)
		}
	})

	unpaid, err := b.sc.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(1000), Currency: stripe.String("usd")})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name   string
		params *stripe.RefundParams
		status int
		code   stripe.ErrorCode
		param  string
	}{
		{"UnknownPaymentIntent", &stripe.RefundParams{PaymentIntent: stripe.String("pi_nope")}, 404, "resource_missing", "payment_intent"},
		{"UnknownCharge", &stripe.RefundParams{Charge: stripe.String("ch_nope")}, 404, "resource_missing", "charge"},
		{"NeitherIntentNorCharge", &stripe.RefundParams{Amount: stripe.Int64(100)}, 400, "", ""},
		{"UnpaidIntent", &stripe.RefundParams{PaymentIntent: stripe.String(unpaid.ID)}, 400, "", "payment_intent"},
		{"CustomerBalanceRefundIsRefusedByName", &stripe.RefundParams{Customer: stripe.String("cus_x"), Amount: stripe.Int64(100), Currency: stripe.String("usd")}, 501, "", ""},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.sc.Refunds.New(tc.params)
			wantErr(t, err, tc.status, tc.code, tc.param)
		})
	}
	t.Run("UnknownRefundIs404", func(t *testing.T) {
		_, err := b.sc.Refunds.Get("re_nope", nil)
		wantErr(t, err, 404, "resource_missing", "")
	})
}
