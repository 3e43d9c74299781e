package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"billingapi/internal/testenv"
)

// TestBillingEventsLargerThanTheSocketBuffers subscribes with a document
// larger than a websocket's read buffer and receives events larger than
// its write buffer (graph keeps both small for idle subscribers), twice
// on the same socket.
func TestBillingEventsLargerThanTheSocketBuffers(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)

	const aliases = 150
	var q strings.Builder
	q.WriteString("subscription($w: ID!) { billingEvents(workspaceId: $w) { ")
	for i := range aliases {
		fmt.Fprintf(&q, "e%d: eventId ", i)
	}
	q.WriteString("payment { id amount } } }")
	if q.Len() < 2048 {
		t.Fatalf("the document is %d bytes, want more than the 512-byte read buffer (and 2 KiB)", q.Len())
	}

	carol := beDial(t, w.testServer, w.carol)
	wsSend(t, carol.c, map[string]any{"id": "big", "type": "subscribe",
		"payload": map[string]any{"query": q.String(), "variables": map[string]any{"w": w.wsA}}})
	beWaitSubscribers(t, w.testServer, 1, wsReadTimeout)

	for n := range 2 {
		eventID, _, payload := bePaymentSucceeded(w.wsA, "alice", int64(1000+n), time.Now().Add(-time.Minute))
		bePostWebhook(t, w.testServer, payload)
		m := carol.expect(t, "next", "big")
		if len(m.Payload) < 2048 {
			t.Errorf("event %d: payload of %d bytes, want more than the 1 KiB write buffer", n, len(m.Payload))
		}
		var r struct {
			Data struct {
				BillingEvents map[string]json.RawMessage `json:"billingEvents"`
			} `json:"data"`
			Errors []gqlError `json:"errors"`
		}
		if err := json.Unmarshal(m.Payload, &r); err != nil || len(r.Errors) > 0 {
			t.Fatalf("event %d: %v %s", n, err, m.Payload)
		}
		for i := range aliases {
			var got string
			_ = json.Unmarshal(r.Data.BillingEvents[fmt.Sprintf("e%d", i)], &got)
			if got != eventID {
				t.Fatalf("event %d: e%d = %q, want %s", n, i, got, eventID)
			}
		}
		var p struct{ Amount int64 }
		if err := json.Unmarshal(r.Data.BillingEvents["payment"], &p); err != nil || p.Amount != int64(1000+n) {
			t.Errorf("event %d: payment %s, want amount %d", n, r.Data.BillingEvents["payment"], 1000+n)
		}
	}
}
