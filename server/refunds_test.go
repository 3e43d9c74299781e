package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/stripe/stripe-go/v76"
)

// sendStripeEvent posts a signed event to the webhook endpoint and fails
// unless it is stored (200).
func sendStripeEvent(t *testing.T, s *testServer, eventType, object string, created time.Time) string {
	t.Helper()
	payload := stripefake.Event("", eventType, object, created)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/webhooks/stripe/", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripefake.Sign(payload, "whsec_test_secret_for_tests", time.Now()))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("webhook %s answered %d", eventType, res.StatusCode)
	}
	s.Worker.Wake()
	return string(payload)
}

type paymentState struct {
	ID, Status             string
	Amount, RefundedAmount int
	RefundableAmount       int
	Refunds                []struct {
		Status, StripeRefundID string
		Amount                 int
	}
}

// paymentByIntent returns the payment of a PaymentIntent as the platform
// admin sees it, waiting up to 10s for until to hold.
func (w *paymentsWorld) paymentByIntent(t *testing.T, admin, pi string, until func(paymentState) bool) paymentState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out struct {
			Workspace struct {
				Payments struct {
					Edges []struct {
						Node struct {
							paymentState
							StripePaymentIntentID string
						}
					}
				}
			}
		}
		w.gql(t, admin, `query($id: ID!) { workspace(id: $id) { payments(first: 100) { edges { node {
			id status amount refundedAmount refundableAmount stripePaymentIntentId refunds { status stripeRefundId amount } } } } } }`,
			map[string]any{"id": w.wsA}).Decode(t, &out)
		for _, e := range out.Workspace.Payments.Edges {
			if e.Node.StripePaymentIntentID == pi && until(e.Node.paymentState) {
				return e.Node.paymentState
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("payment %s never reached the expected state: %+v", pi, out.Workspace.Payments.Edges)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// paidPayment records a succeeded payment of amount through a webhook and
// returns its id.
func (w *paymentsWorld) paidPayment(t *testing.T, admin, pi string, amount int) string {
	t.Helper()
	sendStripeEvent(t, w.testServer, "payment_intent.succeeded", stripefake.PaymentIntentJSON(pi, "succeeded", int64(amount), "usd",
		map[string]string{"workspace_id": w.wsA, "user_id": "alice", "purpose": "credits_pack"}), time.Now())
	return w.paymentByIntent(t, admin, pi, func(p paymentState) bool { return p.Status == "SUCCEEDED" }).ID
}

const refundMutation = `mutation($in: RefundPaymentInput!) { refundPayment(input: $in) { id stripeRefundId amount currency reason reasonDetail status refundedBy } }`

func refundIn(paymentID string, amount any, key string) map[string]any {
	in := map[string]any{"paymentId": paymentID, "reason": "REQUESTED_BY_CUSTOMER", "reasonDetail": "customer asked by email", "idempotencyKey": key}
	if amount != nil {
		in["amount"] = amount
	}
	return map[string]any{"in": in}
}

func TestRefundPayment(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	admin := w.token(t, "root", true)
	paymentID := w.paidPayment(t, admin, "pi_refund_1", 2000)

	t.Run("PartialRefundSendsParamsAndHoldsTheAmount", func(t *testing.T) {
		r := w.gql(t, admin, refundMutation, refundIn(paymentID, 500, "r1"))
		if r.Code() != "" || !strings.Contains(r.Raw, `"amount":500`) || !strings.Contains(r.Raw, `"refundedBy":"root"`) {
			t.Fatalf("refund: %s", r.Raw)
		}
		req, _ := w.fake.Last("POST", "/v1/refunds")
		want := map[string]string{"payment_intent": "pi_refund_1", "amount": "500", "reason": "requested_by_customer",
			"metadata[refunded_by]": "root", "metadata[reason_detail]": "customer asked by email"}
		for k, v := range want {
			if req.Form.Get(k) != v {
				t.Errorf("%s sent = %q, want %q", k, req.Form.Get(k), v)
			}
		}
		if req.Header.Get("Idempotency-Key") == "" {
			t.Error("refund sent without an Idempotency-Key")
		}
		p := w.paymentByIntent(t, admin, "pi_refund_1", func(paymentState) bool { return true })
		if p.RefundableAmount != 1500 || p.Status == "REFUNDED" || len(p.Refunds) != 1 {
			t.Fatalf("payment after a partial refund = %+v", p)
		}
	})
	t.Run("RetryWithTheSameKeyRefundsNothingMore", func(t *testing.T) {
		before := w.fake.Count("POST", "/v1/refunds")
		r := w.gql(t, admin, refundMutation, refundIn(paymentID, 500, "r1"))
		if r.Code() != "" || w.fake.Count("POST", "/v1/refunds") != before {
			t.Fatalf("retry: %s", r.Raw)
		}
		if p := w.paymentByIntent(t, admin, "pi_refund_1", func(paymentState) bool { return true }); p.RefundableAmount != 1500 {
			t.Fatalf("refundable after a retry = %d", p.RefundableAmount)
		}
	})

	rules := []struct {
		name   string
		amount any
		code   string
	}{
		{"Zero", 0, "BAD_USER_INPUT"},
		{"Negative", -1, "BAD_USER_INPUT"},
		{"MoreThanRefundable", 1501, "BAD_USER_INPUT"},
		{"Float", 10.5, "GRAPHQL_VALIDATION_FAILED"},
	}
	for _, tc := range rules {
		t.Run("Refuses"+tc.name, func(t *testing.T) {
			before := w.fake.Count("POST", "/v1/refunds")
			if r := w.gql(t, admin, refundMutation, refundIn(paymentID, tc.amount, "rule-"+tc.name)); r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
			}
			if w.fake.Count("POST", "/v1/refunds") != before {
				t.Fatal("a refused refund reached Stripe")
			}
		})
	}
	t.Run("ExactlyTheRemainderThenNothingMore", func(t *testing.T) {
		if r := w.gql(t, admin, refundMutation, refundIn(paymentID, 1500, "r2")); r.Code() != "" {
			t.Fatalf("remainder: %s", r.Raw)
		}
		if r := w.gql(t, admin, refundMutation, refundIn(paymentID, 1, "r3")); r.Code() != "BAD_USER_INPUT" {
			t.Fatalf("beyond the remainder: %s", r.Raw)
		}
		if r := w.gql(t, admin, refundMutation, refundIn(paymentID, nil, "r4")); r.Code() != "BAD_USER_INPUT" {
			t.Fatalf("full refund of a fully refunded payment: %s", r.Raw)
		}
		p := w.paymentByIntent(t, admin, "pi_refund_1", func(paymentState) bool { return true })
		if p.Status == "REFUNDED" {
			t.Fatal("REFUNDED before Stripe's charge.refunded confirmed it")
		}
	})
	t.Run("ChargeRefundedConfirmsPartialThenFull", func(t *testing.T) {
		id := w.paidPayment(t, admin, "pi_refund_3", 2000)
		charge := func(refunded int) string {
			return fmt.Sprintf(`{"id":"ch_3","object":"charge","payment_intent":"pi_refund_3","amount":2000,"amount_refunded":%d,"currency":"usd","metadata":{"workspace_id":%q}}`, refunded, w.wsA)
		}
		if r := w.gql(t, admin, refundMutation, refundIn(id, 500, "c1")); r.Code() != "" {
			t.Fatal(r.Raw)
		}
		sendStripeEvent(t, w.testServer, "charge.refunded", charge(500), time.Now())
		p := w.paymentByIntent(t, admin, "pi_refund_3", func(p paymentState) bool {
			return p.Status == "PARTIALLY_REFUNDED" && p.RefundedAmount == 500
		})
		if p.RefundedAmount != 500 || p.RefundableAmount != 1500 {
			t.Fatalf("after a confirmed partial refund: %+v", p)
		}
		if r := w.gql(t, admin, refundMutation, refundIn(id, nil, "c2")); r.Code() != "" {
			t.Fatal(r.Raw)
		}
		p = w.paymentByIntent(t, admin, "pi_refund_3", func(paymentState) bool { return true })
		if p.Status != "REFUND_PENDING" || p.RefundableAmount != 0 {
			t.Fatalf("full amount refunded but not confirmed: %+v", p)
		}
		sendStripeEvent(t, w.testServer, "charge.refunded", charge(2000), time.Now())
		p = w.paymentByIntent(t, admin, "pi_refund_3", func(p paymentState) bool { return p.Status == "REFUNDED" && p.RefundedAmount == 2000 })
		if p.RefundedAmount != 2000 || p.RefundableAmount != 0 {
			t.Fatalf("after full confirmation: %+v", p)
		}
	})
	t.Run("OnlyPlatformAdmins", func(t *testing.T) {
		other := w.paidPayment(t, admin, "pi_refund_2", 1000)
		for token, code := range map[string]string{w.alice: "FORBIDDEN", w.bob: "FORBIDDEN", "": "UNAUTHENTICATED"} {
			if r := w.gql(t, token, refundMutation, refundIn(other, 100, "nope")); r.Code() != code {
				t.Errorf("code = %q, want %q: %s", r.Code(), code, r.Raw)
			}
		}
	})
	t.Run("UnpaidPaymentCannotBeRefunded", func(t *testing.T) {
		var out paymentPayload
		w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": "unpaid"})).Decode(t, &out)
		if r := w.gql(t, admin, refundMutation, refundIn(out.CreatePaymentIntent.Payment.ID, nil, "unpaid")); r.Code() != "BAD_USER_INPUT" {
			t.Fatalf("refund of an unpaid payment: %s", r.Raw)
		}
	})
	t.Run("StripeRefusalsForTheChargesStateAreTheUsers", func(t *testing.T) {
		id := w.paidPayment(t, admin, "pi_refund_4", 1000)
		for code, want := range map[string]string{"charge_already_refunded": "refunded in full", "charge_disputed": "disputed"} {
			w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/refunds", Times: 1, Status: 400,
				Body: stripefake.StripeError("invalid_request_error", code, "", "SENTINEL stripe text")})
			r := w.gql(t, admin, refundMutation, refundIn(id, 100, "refused-"+code))
			if r.Code() != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, want) || strings.Contains(r.Raw, "SENTINEL") {
				t.Errorf("%s: %s; want BAD_USER_INPUT saying %q, without Stripe's text", code, r.Raw, want)
			}
		}
		if p := w.paymentByIntent(t, admin, "pi_refund_4", func(paymentState) bool { return true }); p.RefundableAmount != 1000 {
			t.Fatalf("refused refunds held %d of the payment", 1000-p.RefundableAmount)
		}
	})
	t.Run("UnknownPaymentIsNotFound", func(t *testing.T) {
		if r := w.gql(t, admin, refundMutation, refundIn("6f1f5f0e-1111-4a4a-9999-0123456789ab", nil, "x")); r.Code() != "NOT_FOUND" {
			t.Fatalf("unknown payment: %s", r.Raw)
		}
	})
}

func TestFailedRefundRestoresTheRefundable(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	admin := w.token(t, "root", true)
	paymentID := w.paidPayment(t, admin, "pi_fail_1", 1000)
	w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/refunds", Times: 1,
		Body: `{"id":"re_will_fail","object":"refund","amount":400,"currency":"usd","payment_intent":"pi_fail_1","status":"pending"}`})
	if r := w.gql(t, admin, refundMutation, refundIn(paymentID, 400, "f1")); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	p := w.paymentByIntent(t, admin, "pi_fail_1", func(paymentState) bool { return true })
	if p.RefundableAmount != 600 || p.Status != "REFUND_PENDING" {
		t.Fatalf("while pending: %+v", p)
	}
	sendStripeEvent(t, w.testServer, "refund.updated", `{"id":"re_will_fail","object":"refund","amount":400,"currency":"usd",
		"payment_intent":"pi_fail_1","status":"failed","failure_reason":"expired_or_canceled_card"}`, time.Now())
	// A payment's fields are read by separate queries, so wait for all of
	// them to show the applied event.
	p = w.paymentByIntent(t, admin, "pi_fail_1", func(p paymentState) bool {
		return p.RefundableAmount == 1000 && p.Status == "SUCCEEDED" && p.Refunds[0].Status == "FAILED"
	})
	if p.RefundedAmount != 0 {
		t.Fatalf("after the failure: %+v", p)
	}
}

func TestChargeRefundedBeforeOurRefundRowIsLinked(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	admin := w.token(t, "root", true)
	paymentID := w.paidPayment(t, admin, "pi_race_1", 800)
	// Stripe is slow to answer our refund; its webhook arrives first.
	w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/refunds", Times: 1, Delay: time.Second,
		Body: `{"id":"re_race","object":"refund","amount":800,"currency":"usd","payment_intent":"pi_race_1","status":"succeeded"}`})
	done := make(chan gqlResponse, 1)
	go func() { done <- w.gql(t, admin, refundMutation, refundIn(paymentID, nil, "race")) }()
	time.Sleep(300 * time.Millisecond)
	sendStripeEvent(t, w.testServer, "charge.refunded", fmt.Sprintf(`{"id":"ch_race","object":"charge","payment_intent":"pi_race_1",
		"amount":800,"amount_refunded":800,"currency":"usd","metadata":{"workspace_id":%q}}`, w.wsA), time.Now())
	sendStripeEvent(t, w.testServer, "refund.updated", `{"id":"re_race","object":"refund","amount":800,"currency":"usd",
		"payment_intent":"pi_race_1","status":"succeeded"}`, time.Now())
	if r := <-done; r.Code() != "" {
		t.Fatalf("refund: %s", r.Raw)
	}
	p := w.paymentByIntent(t, admin, "pi_race_1", func(p paymentState) bool {
		return p.Status == "REFUNDED" && len(p.Refunds) == 1 && p.Refunds[0].Status == "SUCCEEDED"
	})
	if p.RefundableAmount != 0 || len(p.Refunds) != 1 || p.Refunds[0].StripeRefundID != "re_race" || p.Refunds[0].Status != "SUCCEEDED" {
		t.Fatalf("final state = %+v", p)
	}
}

func TestTwentyConcurrentPartialRefundsNeverExceedThePayment(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), nil)
	admin := w.token(t, "root", true)
	paymentID := w.paidPayment(t, admin, "pi_many", 1000)
	w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/refunds", Delay: 50 * time.Millisecond, Forward: true})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.gql(t, admin, refundMutation, refundIn(paymentID, 150, "many-"+strconv.Itoa(i)))
		}()
	}
	wg.Wait()
	sent := 0
	for _, req := range w.fake.Requests() {
		if req.Method == "POST" && req.Path == "/v1/refunds" {
			n, _ := strconv.Atoi(req.Form.Get("amount"))
			sent += n
		}
	}
	if sent > 1000 || sent != 900 {
		t.Fatalf("refunds sent to Stripe add up to %d; want 900 (six of 150), never above 1000", sent)
	}
	if p := w.paymentByIntent(t, admin, "pi_many", func(paymentState) bool { return true }); p.RefundableAmount != 100 {
		t.Fatalf("refundable = %d, want 100", p.RefundableAmount)
	}
}

// An idempotency key is bound to every parameter of the refund: repeated
// with another amount, reason or reason detail (the last two used to
// answer the first refund) it is refused, and Stripe refunds nothing more.
func TestRefundIdempotencyKeyBindsEveryParameter(t *testing.T) {
	d := newSandboxDriver(t)
	pm, err := d.saveCard("pm_card_visa")
	if err != nil {
		t.Fatal(err)
	}
	paymentID, _, err := d.payment(pm, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.untilPayment("paid", "SUCCEEDED", 0); err != nil {
		t.Fatal(err)
	}
	refunds := func() int { return sandboxCount(t, d.sc.Refunds.List(&stripe.RefundListParams{})) }
	t.Run("OfAnAmount", func(t *testing.T) {
		base := map[string]any{"paymentId": paymentID, "amount": 1000, "reason": "REQUESTED_BY_CUSTOMER",
			"reasonDetail": "asked by email", "idempotencyKey": "refund-1"}
		d.assertKeyBindsEveryParameter(t, d.admin, refundMutation, "refundPayment.id", base,
			[]keyCase{
				{"AnotherAmount", map[string]any{"amount": 1500}},
				{"NoAmount", map[string]any{"amount": nil}},
				{"AnotherReason", map[string]any{"reason": "DUPLICATE"}},
				{"FraudAsTheReason", map[string]any{"reason": "FRAUDULENT"}},
				{"AnotherReasonDetail", map[string]any{"reasonDetail": "asked by phone"}},
				{"NoReasonDetail", map[string]any{"reasonDetail": nil}},
			},
			[]keyCase{{"TheReasonDetailAmidSpaces", map[string]any{"reasonDetail": "  asked by email "}}},
			refunds)
	})
	// What is left, asked for without an amount, is not the same request
	// as that amount asked for; and the refund's retry finds it once
	// nothing is left to refund.
	t.Run("OfWhatIsLeft", func(t *testing.T) {
		base := map[string]any{"paymentId": paymentID, "reason": "REQUESTED_BY_CUSTOMER", "idempotencyKey": "refund-rest"}
		d.assertKeyBindsEveryParameter(t, d.admin, refundMutation, "refundPayment.id", base,
			[]keyCase{{"TheAmountThatWasLeft", map[string]any{"amount": 4000}}}, nil, refunds)
	})
}
