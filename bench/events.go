package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"billingapi/internal/stripeevent"
)

// eventGen makes signed Stripe events for the bench's workspaces: a mix of
// subscription, invoice and payment events, as Stripe sends them for
// subscribed workspaces. Every event has a later `created` second than
// the one before, so that two events of one subscription never tie (a
// tie makes the server ask Stripe for the subscription).
type eventGen struct {
	secret string
	prefix string // of event ids, e.g. evt_bench_b4c16_
	seq    *atomic.Int64
	base   time.Time
	ws     []benchWorkspace
}

// benchWorkspace is a workspace of the bench, with its owner's token and
// the id of its Stripe subscription.
type benchWorkspace struct {
	ID    string
	Owner string
	Token string
	SubID string
}

// eventSeq is shared by every generator of a run so that `created`
// always grows.
var eventSeq atomic.Int64

// eventBase is the `created` of the first event: far enough in the past
// that a million events still end before now.
var eventBase = time.Now().Add(-40 * 24 * time.Hour).Truncate(time.Second)

func newEventGen(secret, prefix string, ws []benchWorkspace) *eventGen {
	return &eventGen{secret: secret, prefix: prefix, seq: &eventSeq, base: eventBase, ws: ws}
}

// mixNames is the mix, one slot per tenth of the events.
var mixNames = [10]string{
	"customer.subscription.updated", "customer.subscription.updated", "customer.subscription.updated",
	"invoice.paid", "invoice.paid", "invoice.payment_failed",
	"payment_intent.succeeded", "payment_intent.succeeded", "payment_intent.payment_failed",
	"payment_intent.processing",
}

// next returns event n of the mix: its id and body.
func (g *eventGen) next(n int64) (string, []byte) {
	seq := g.seq.Add(1)
	created := g.base.Add(time.Duration(seq) * time.Second)
	w := g.ws[int(n)%len(g.ws)]
	meta := map[string]string{"workspace_id": w.ID, "user_id": w.Owner, "purpose": "credits_pack"}
	id := fmt.Sprintf("%s%d", g.prefix, n)
	typ := mixNames[n%10]
	var obj string
	switch typ {
	case "customer.subscription.updated":
		status := "active"
		if seq%7 == 0 {
			status = "past_due"
		}
		obj = subscriptionJSON(w, status, created)
	case "invoice.paid":
		obj = stripeevent.InvoiceJSON(fmt.Sprintf("in_%s%d", g.prefix, n), "", w.SubID, "paid", 2900, 2900, map[string]string{"workspace_id": w.ID})
	case "invoice.payment_failed":
		obj = stripeevent.InvoiceJSON(fmt.Sprintf("in_%s%d", g.prefix, n), "", w.SubID, "open", 2900, 0, map[string]string{"workspace_id": w.ID})
	case "payment_intent.succeeded":
		obj = stripeevent.PaymentIntentJSON(fmt.Sprintf("pi_%s%d", g.prefix, n), "succeeded", 1999, "usd", meta)
	case "payment_intent.payment_failed":
		obj = stripeevent.PaymentIntentJSON(fmt.Sprintf("pi_%s%d", g.prefix, n), "requires_payment_method", 1999, "usd", meta)
	case "payment_intent.processing":
		obj = stripeevent.PaymentIntentJSON(fmt.Sprintf("pi_%s%d", g.prefix, n), "processing", 1999, "usd", meta)
	}
	return id, stripeevent.Event(id, typ, obj, created)
}

// paymentEvent returns a payment_intent.succeeded event for workspace w:
// each one records a new payment, so each one is published.
func (g *eventGen) paymentEvent(n int64, w benchWorkspace) (string, []byte) {
	seq := g.seq.Add(1)
	created := g.base.Add(time.Duration(seq) * time.Second)
	id := fmt.Sprintf("%s%d", g.prefix, n)
	meta := map[string]string{"workspace_id": w.ID, "user_id": w.Owner, "purpose": "credits_pack"}
	obj := stripeevent.PaymentIntentJSON(fmt.Sprintf("pi_%s%d", g.prefix, n), "succeeded", 1999, "usd", meta)
	return id, stripeevent.Event(id, "payment_intent.succeeded", obj, created)
}

// subscriptionCreated is the event that gives a workspace its active
// subscription at setup.
func (g *eventGen) subscriptionCreated(w benchWorkspace) (string, []byte) {
	seq := g.seq.Add(1)
	created := g.base.Add(time.Duration(seq) * time.Second)
	id := fmt.Sprintf("%screated_%s", g.prefix, w.SubID)
	return id, stripeevent.Event(id, "customer.subscription.created", subscriptionJSON(w, "active", created), created)
}

func subscriptionJSON(w benchWorkspace, status string, created time.Time) string {
	return stripeevent.SubscriptionJSON(stripeevent.Subscription{
		ID: w.SubID, Status: status, PriceID: "price_pro_monthly", LookupKey: "pro_monthly",
		Metadata:    map[string]string{"workspace_id": w.ID, "plan": "pro"},
		PeriodStart: created.Add(-24 * time.Hour), PeriodEnd: created.Add(29 * 24 * time.Hour),
	})
}

// postEvent signs and posts one event; it fails unless the answer is 200.
func postEvent(ctx context.Context, c *http.Client, url, secret string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/webhooks/stripe/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(body, secret, time.Now()))
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("webhook HTTP %d: %.200s", res.StatusCode, b)
	}
	return nil
}
