package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"
	"billingapi/webhooks"
)

// eventList renders Stripe's answer to GET /v1/events: newest first.
func eventList(events ...[]byte) string {
	return `{"object":"list","url":"/v1/events","has_more":false,"data":[` + string(joinJSON(events)) + `]}`
}

func joinJSON(items [][]byte) []byte {
	out := []byte{}
	for i := len(items) - 1; i >= 0; i-- { // newest first
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(out, items[i]...)
	}
	return out
}

func TestReconcilerIngestsEventsWeNeverReceived(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	meta := map[string]string{"workspace_id": w.wsA, "user_id": "alice", "purpose": "credits_pack"}
	now := time.Now()
	received := stripefake.Event("evt_got_it", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_got", "succeeded", 1000, "usd", meta), now.Add(-2*time.Minute))
	if status, _ := whPost(t, w.testServer, "/webhooks/stripe/", received, whSign(received)); status != http.StatusOK {
		t.Fatalf("webhook answered %d", status)
	}
	whWaitStatus(t, w.testServer, "evt_got_it", webhookevent.StatusProcessed)
	// During an outage Stripe could not deliver these two.
	missed1 := stripefake.Event("evt_missed_1", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_missed_1", "succeeded", 2000, "usd", meta), now.Add(-time.Minute))
	missed2 := stripefake.Event("evt_missed_2", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_missed_2", "succeeded", 3000, "usd", meta), now)
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/events", Body: eventList(received, missed1, missed2)})
	t.Cleanup(w.fake.ClearRules)

	r := &webhooks.Reconciler{DB: w.DB, Billing: w.Billing, Log: w.Log, Wake: w.Worker.Wake}
	n, err := r.ReconcileOnce(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("reconcile stored %d (err %v), want the 2 missed events", n, err)
	}
	req, _ := w.fake.Last("GET", "/v1/events")
	// From the newest stored event (the one received), less the overlap.
	want := fmt.Sprint(now.Add(-2*time.Minute).Unix() - int64(webhooks.ReconcileOverlap.Seconds()))
	if gte := req.Query.Get("created[gte]"); gte != want {
		t.Errorf("listed from created[gte]=%q, want %s", gte, want)
	}
	whWaitStatus(t, w.testServer, "evt_missed_1", webhookevent.StatusProcessed)
	whWaitStatus(t, w.testServer, "evt_missed_2", webhookevent.StatusProcessed)
	for _, pi := range []string{"pi_got", "pi_missed_1", "pi_missed_2"} {
		if c := whPaymentsIn(t, w.testServer, w.wsA, pi); c != 1 {
			t.Fatalf("%s recorded %d times, want once", pi, c)
		}
	}
	// A second run finds nothing new.
	if n, err := r.ReconcileOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("second run stored %d (err %v), want 0", n, err)
	}
}

// After an outage and a restart, the events that arrive first must not
// hide the outage: the first run lists from the newest event stored when
// the reconciler began, and each later run from where the one before it
// began.
func TestReconcilerListsFromBeforeTheOutage(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	meta := map[string]string{"workspace_id": w.wsA, "user_id": "alice", "purpose": "credits_pack"}
	now := time.Now()
	deliver := func(ev []byte) {
		t.Helper()
		if status, _ := whPost(t, w.testServer, "/webhooks/stripe/", ev, whSign(ev)); status != http.StatusOK {
			t.Fatalf("webhook answered %d", status)
		}
	}
	before := stripefake.Event("evt_before", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_before", "succeeded", 1000, "usd", meta), now.Add(-2*time.Hour))
	deliver(before)
	r := &webhooks.Reconciler{DB: w.DB, Billing: w.Billing, Log: w.Log, Wake: w.Worker.Wake}
	if err := r.Begin(context.Background()); err != nil { // the server restarts after the outage
		t.Fatal(err)
	}
	after := stripefake.Event("evt_after", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_after", "succeeded", 1000, "usd", meta), now)
	deliver(after)
	missed := stripefake.Event("evt_in_outage", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_in_outage", "succeeded", 1000, "usd", meta), now.Add(-time.Hour))
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/events", Body: eventList(before, missed, after)})
	t.Cleanup(w.fake.ClearRules)

	if n, err := r.ReconcileOnce(context.Background()); err != nil || n != 1 {
		t.Fatalf("reconcile stored %d (err %v), want the event of the outage", n, err)
	}
	req, _ := w.fake.Last("GET", "/v1/events")
	want := fmt.Sprint(now.Add(-2*time.Hour).Unix() - int64(webhooks.ReconcileOverlap.Seconds()))
	if gte := req.Query.Get("created[gte]"); gte != want {
		t.Errorf("first run listed from created[gte]=%q, want %s (the newest event stored at Begin, less the overlap)", gte, want)
	}
	second := time.Now()
	if _, err := r.ReconcileOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	req, _ = w.fake.Last("GET", "/v1/events")
	gte, _ := strconv.ParseInt(req.Query.Get("created[gte]"), 10, 64)
	if from := time.Unix(gte, 0); from.After(second.Add(-webhooks.ReconcileOverlap)) || from.Before(now.Add(-webhooks.ReconcileOverlap-time.Second)) {
		t.Errorf("second run listed from %v, want where the first began, less the overlap", from)
	}
	whWaitStatus(t, w.testServer, "evt_in_outage", webhookevent.StatusProcessed)
}

// An event Stripe lists that can never be stored (here an id, or an
// object id, with a NUL, which PostgreSQL refuses) is passed over, as the
// endpoint refuses it:
// it must not stop the events after it from being stored, nor hold every
// later run at the same window.
func TestReconcilerPassesOverAnEventItCanNeverStore(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), nil)
	meta := map[string]string{"workspace_id": w.wsA, "user_id": "alice", "purpose": "credits_pack"}
	now := time.Now()
	missed1 := stripefake.Event("evt_missed_a", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_missed_a", "succeeded", 2000, "usd", meta), now.Add(-3*time.Minute))
	bad := stripefake.Event("evt_\x00bad", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_bad", "succeeded", 2000, "usd", meta), now.Add(-2*time.Minute))
	badObject := stripefake.Event("evt_bad_object", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_\x00bad", "succeeded", 2000, "usd", meta), now.Add(-90*time.Second))
	missed2 := stripefake.Event("evt_missed_b", "payment_intent.succeeded", stripefake.PaymentIntentJSON("pi_missed_b", "succeeded", 3000, "usd", meta), now.Add(-time.Minute))
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/events", Body: eventList(missed1, bad, badObject, missed2)})
	t.Cleanup(w.fake.ClearRules)

	r := &webhooks.Reconciler{DB: w.DB, Billing: w.Billing, Log: w.Log, Wake: w.Worker.Wake}
	if n, err := r.ReconcileOnce(context.Background()); err != nil || n != 2 {
		t.Fatalf("reconcile stored %d (err %v), want the 2 storable events", n, err)
	}
	whWaitStatus(t, w.testServer, "evt_missed_b", webhookevent.StatusProcessed)
	second := time.Now()
	if n, err := r.ReconcileOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("second run stored %d (err %v), want 0", n, err)
	}
	req, _ := w.fake.Last("GET", "/v1/events")
	gte, _ := strconv.ParseInt(req.Query.Get("created[gte]"), 10, 64)
	if from := time.Unix(gte, 0); from.Before(second.Add(-webhooks.ReconcileOverlap - 2*time.Minute)) {
		t.Errorf("second run listed from %v, want where the first run began (less the overlap), not before it", from)
	}
}
