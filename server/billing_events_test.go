package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/alicebob/miniredis/v2"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// beWebhookSecret is the signing secret withStripe configures.
const beWebhookSecret = "whsec_test_secret_for_tests"

// beSubscription is the billingEvents subscription every client sends.
const beSubscription = `subscription($w: ID!) {
	billingEvents(workspaceId: $w) {
		eventId type occurredAt workspaceId
		payment { id stripePaymentIntentId amount currency purpose status createdBy }
		subscription { id }
		invoice { id }
	}
}`

// errBeTimeout is what beConn.next returns when nothing arrived in time.
var errBeTimeout = errors.New("no message within the timeout")

// beConn is a graphql-transport-ws client whose messages are read by a
// goroutine into a channel, so that waiting for a message with a timeout
// never closes the socket (coder/websocket closes the connection when a
// Read's context expires).
type beConn struct {
	c    *websocket.Conn
	msgs chan wsMessage
	done chan struct{} // closed when the reader stops; err is then set
	err  error
}

// beDial opens a graphql-transport-ws socket to s, sends connection_init
// with token (none when empty) and waits for connection_ack.
func beDial(t *testing.T, s *testServer, token string) *beConn {
	t.Helper()
	c := wsDial(t, s, "graphql-transport-ws", nil)
	wsSend(t, c, map[string]any{"type": "connection_init", "payload": wsInitPayload(token)})
	wsExpect(t, c, "connection_ack", "")
	bc := &beConn{c: c, msgs: make(chan wsMessage, 256), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(bc.done)
		for {
			var m wsMessage
			if err := wsjson.Read(ctx, c, &m); err != nil {
				bc.err = err
				return
			}
			switch m.Type {
			case "ping":
				// graphql-transport-ws: answer the server's keep-alive.
				wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
				_ = wsjson.Write(wctx, c, map[string]any{"type": "pong"})
				wcancel()
				continue
			case "ka", "pong":
				continue
			}
			select {
			case bc.msgs <- m:
			case <-ctx.Done():
				bc.err = ctx.Err()
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = c.CloseNow()
		<-bc.done
	})
	return bc
}

// next returns the next message within timeout, errBeTimeout, or the
// error that ended the connection.
func (bc *beConn) next(timeout time.Duration) (wsMessage, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case m := <-bc.msgs:
		return m, nil
	case <-bc.done:
		select {
		case m := <-bc.msgs:
			return m, nil
		default:
		}
		return wsMessage{}, fmt.Errorf("connection ended: %w (close status %d)", bc.err, websocket.CloseStatus(bc.err))
	case <-timer.C:
		return wsMessage{}, errBeTimeout
	}
}

// expect reads the next message and fails unless it has type typ and id.
func (bc *beConn) expect(t *testing.T, typ, id string) wsMessage {
	t.Helper()
	m, err := bc.next(wsReadTimeout)
	if err != nil {
		t.Fatalf("waiting for %s id=%q: %v", typ, id, err)
	}
	if m.Type != typ || m.ID != id {
		t.Fatalf("got %s id=%q payload=%s, want %s id=%q", m.Type, m.ID, m.Payload, typ, id)
	}
	return m
}

// expectNothing fails if any message arrives (or the socket ends) within d.
func (bc *beConn) expectNothing(t *testing.T, who string, d time.Duration) {
	t.Helper()
	m, err := bc.next(d)
	switch {
	case errors.Is(err, errBeTimeout):
	case err != nil:
		t.Errorf("%s: the socket ended while waiting for silence: %v", who, err)
	default:
		t.Errorf("%s got %s id=%q payload=%s, want nothing", who, m.Type, m.ID, m.Payload)
	}
}

// subscribe starts billingEvents(workspaceId: ws) under id.
func (bc *beConn) subscribe(t *testing.T, id, ws string) {
	t.Helper()
	wsSend(t, bc.c, map[string]any{"id": id, "type": "subscribe",
		"payload": map[string]any{"query": beSubscription, "variables": map[string]any{"w": ws}}})
}

// beEvent is a BillingEvent as the subscription selects it.
type beEvent struct {
	EventID     string `json:"eventId"`
	Type        string `json:"type"`
	OccurredAt  string `json:"occurredAt"`
	WorkspaceID string `json:"workspaceId"`
	Payment     *struct {
		ID                    string `json:"id"`
		StripePaymentIntentID string `json:"stripePaymentIntentId"`
		Amount                int64  `json:"amount"`
		Currency              string `json:"currency"`
		Purpose               string `json:"purpose"`
		Status                string `json:"status"`
		CreatedBy             string `json:"createdBy"`
	} `json:"payment"`
	Subscription *struct{ ID string } `json:"subscription"`
	Invoice      *struct{ ID string } `json:"invoice"`
}

// beDecodeEvent decodes a next message of the subscription, failing on
// errors.
func beDecodeEvent(t *testing.T, m wsMessage) beEvent {
	t.Helper()
	var r wsResult
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("decode %s payload %s: %v", m.Type, m.Payload, err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("errors in the event: %s", m.Payload)
	}
	var data struct {
		BillingEvents *beEvent `json:"billingEvents"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil || data.BillingEvents == nil {
		t.Fatalf("decode data %s: %v", r.Data, err)
	}
	return *data.BillingEvents
}

// nextEvent waits for the next event of subscription id.
func (bc *beConn) nextEvent(t *testing.T, id string) beEvent {
	t.Helper()
	return beDecodeEvent(t, bc.expect(t, "next", id))
}

// expectRefused reads the answer to a refused subscription id: an error
// message, or a next without data followed by complete, whose first error
// has extensions.code code.
func (bc *beConn) expectRefused(t *testing.T, id, code string) {
	t.Helper()
	m, err := bc.next(wsReadTimeout)
	if err != nil {
		t.Fatalf("waiting for the refusal of subscription %s: %v", id, err)
	}
	if m.ID != id {
		t.Fatalf("got %s id=%q payload=%s, want the refusal of subscription %q", m.Type, m.ID, m.Payload, id)
	}
	var errs []gqlError
	switch m.Type {
	case "error":
		if err := json.Unmarshal(m.Payload, &errs); err != nil {
			t.Fatalf("decode error payload %s: %v", m.Payload, err)
		}
	case "next":
		var r wsResult
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Fatalf("decode next payload %s: %v", m.Payload, err)
		}
		if d := strings.TrimSpace(string(r.Data)); d != "" && d != "null" {
			t.Errorf("refused subscription %s carried data %s", id, d)
		}
		errs = r.Errors
	default:
		t.Fatalf("got %s (payload %s), want next or error refusing subscription %s", m.Type, m.Payload, id)
	}
	if len(errs) == 0 {
		t.Fatalf("no errors in the refusal of subscription %s: %s", id, m.Payload)
	}
	if got, _ := errs[0].Extensions["code"].(string); got != code {
		t.Errorf("refusal of subscription %s: extensions.code = %q, want %s: %s", id, got, code, m.Payload)
	}
	if m.Type == "next" {
		bc.expect(t, "complete", id)
	}
}

var beSeq atomic.Int64

// bePaymentSucceeded returns a payment_intent.succeeded event for
// workspace ws, created at created, with fresh event and PaymentIntent ids.
func bePaymentSucceeded(ws, userID string, amount int64, created time.Time) (eventID, piID string, payload []byte) {
	n := fmt.Sprintf("%d_%d", time.Now().UnixNano(), beSeq.Add(1))
	eventID, piID = "evt_be_"+n, "pi_be_"+n
	obj := stripefake.PaymentIntentJSON(piID, "succeeded", amount, "usd",
		map[string]string{"workspace_id": ws, "user_id": userID, "purpose": "credits_pack"})
	return eventID, piID, stripefake.Event(eventID, "payment_intent.succeeded", obj, created)
}

// bePostWebhook posts payload, signed now, to s's Stripe webhook endpoint
// and fails unless it is accepted.
func bePostWebhook(t *testing.T, s *testServer, payload []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/webhooks/stripe/", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripefake.Sign(payload, beWebhookSecret, time.Now()))
	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST webhook: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST webhook: HTTP %d: %s", res.StatusCode, body)
	}
}

// bePostPaymentSucceeded posts a signed payment_intent.succeeded event for
// workspace ws to s and returns the event and PaymentIntent ids.
func bePostPaymentSucceeded(t *testing.T, s *testServer, ws, userID string, amount int64, created time.Time) (eventID, piID string) {
	t.Helper()
	eventID, piID, payload := bePaymentSucceeded(ws, userID, amount, created)
	bePostWebhook(t, s, payload)
	return eventID, piID
}

// beWaitSubscribers waits until s's bus has want local subscribers.
func beWaitSubscribers(t *testing.T, s *testServer, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.Bus.Subscribers()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bus subscribers = %d after %s, want %d", got, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// beCheckPaymentEvent checks an event against the posted one.
func beCheckPaymentEvent(t *testing.T, who string, ev beEvent, eventID, piID, ws string, amount int64, created time.Time) {
	t.Helper()
	if ev.EventID != eventID {
		t.Errorf("%s: eventId = %q, want %q", who, ev.EventID, eventID)
	}
	if ev.Type != "payment_intent.succeeded" {
		t.Errorf("%s: type = %q, want payment_intent.succeeded", who, ev.Type)
	}
	if ev.WorkspaceID != ws {
		t.Errorf("%s: workspaceId = %q, want %q", who, ev.WorkspaceID, ws)
	}
	if at, err := time.Parse(time.RFC3339Nano, ev.OccurredAt); err != nil {
		t.Errorf("%s: occurredAt %q does not parse: %v", who, ev.OccurredAt, err)
	} else if !at.Equal(created.Truncate(time.Second)) {
		t.Errorf("%s: occurredAt = %s, want the event's created time %s", who, at, created.Truncate(time.Second).UTC())
	}
	if ev.Payment == nil {
		t.Fatalf("%s: payment is null in %+v", who, ev)
	}
	p := ev.Payment
	if p.ID == "" || p.StripePaymentIntentID != piID || p.Status != "SUCCEEDED" || p.Amount != amount ||
		p.Currency != "usd" || p.Purpose != "credits_pack" {
		t.Errorf("%s: payment = %+v, want %s SUCCEEDED %d usd credits_pack", who, *p, piID, amount)
	}
	if ev.Subscription != nil || ev.Invoice != nil {
		t.Errorf("%s: a payment event carries subscription %v / invoice %v", who, ev.Subscription, ev.Invoice)
	}
}

func TestBillingEventsReachMembersOnly(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)

	carol := beDial(t, w.testServer, w.carol)
	carol.subscribe(t, "1", w.wsA)

	bob := beDial(t, w.testServer, w.bob)
	bob.subscribe(t, "1", w.wsA)
	bob.expectRefused(t, "1", "NOT_FOUND")
	bob.subscribe(t, "2", w.wsB)

	anon := beDial(t, w.testServer, "")
	anon.subscribe(t, "1", w.wsA)
	anon.expectRefused(t, "1", "UNAUTHENTICATED")

	// carol on A and bob on B; the refused ones never reach the bus.
	beWaitSubscribers(t, w.testServer, 2, wsReadTimeout)

	created := time.Now().Add(-time.Minute)
	eventID, piID, payload := bePaymentSucceeded(w.wsA, "alice", 4242, created)
	bePostWebhook(t, w.testServer, payload)

	ev := carol.nextEvent(t, "1")
	beCheckPaymentEvent(t, "carol", ev, eventID, piID, w.wsA, 4242, created)
	if n := w.paymentCount(t, w.carol, w.wsA); n != 1 {
		t.Errorf("workspace A has %d payments after the webhook, want 1", n)
	}

	// Stripe delivering the same event again is applied, and published,
	// once.
	bePostWebhook(t, w.testServer, payload)

	// Within a second: nothing more for carol, nothing for bob's own
	// workspace, nothing for the anonymous socket.
	done := make(chan struct{}, 3)
	for _, c := range []struct {
		who string
		bc  *beConn
	}{{"carol (once only)", carol}, {"bob subscribed to B", bob}, {"anonymous", anon}} {
		go func() {
			defer func() { done <- struct{}{} }()
			m, err := c.bc.next(time.Second)
			switch {
			case errors.Is(err, errBeTimeout):
			case err != nil:
				t.Errorf("%s: the socket ended: %v", c.who, err)
			default:
				t.Errorf("%s got %s id=%q payload=%s for an event of workspace A, want nothing", c.who, m.Type, m.ID, m.Payload)
			}
		}()
	}
	for range 3 {
		<-done
	}
}

// TestBillingEventsRenderedOncePerSubscription: members of a workspace who
// sent the same subscription get one rendering of each event between them
// (each still gets it, with its own subscription id); a different
// selection is rendered on its own.
func TestBillingEventsRenderedOncePerSubscription(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	const amounts = `subscription($w: ID!) { billingEvents(workspaceId: $w) { eventId payment { amount refundedAmount refunds { id } } } }`

	alice := beDial(t, w.testServer, w.alice)
	alice.subscribe(t, "a", w.wsA)
	carol := beDial(t, w.testServer, w.carol)
	carol.subscribe(t, "c", w.wsA)
	other := beDial(t, w.testServer, w.alice)
	wsSend(t, other.c, map[string]any{"id": "o", "type": "subscribe",
		"payload": map[string]any{"query": amounts, "variables": map[string]any{"w": w.wsA}}})
	beWaitSubscribers(t, w.testServer, 3, wsReadTimeout)

	before := scrapeMetrics(t, w.testServer)
	created := time.Now().Add(-time.Minute)
	for i, amount := range []int64{700, 800} {
		eventID, piID := bePostPaymentSucceeded(t, w.testServer, w.wsA, "alice", amount, created)
		beCheckPaymentEvent(t, fmt.Sprint("alice, event ", i+1), alice.nextEvent(t, "a"), eventID, piID, w.wsA, amount, created)
		beCheckPaymentEvent(t, fmt.Sprint("carol, event ", i+1), carol.nextEvent(t, "c"), eventID, piID, w.wsA, amount, created)
		m := other.expect(t, "next", "o")
		want := fmt.Sprintf(`{"data":{"billingEvents":{"eventId":%q,"payment":{"amount":%d,"refundedAmount":0,"refunds":[]}}}}`, eventID, amount)
		if string(m.Payload) != want {
			t.Errorf("the other selection, event %d: got %s, want %s", i+1, m.Payload, want)
		}
	}
	after := scrapeMetrics(t, w.testServer)
	const family = "billingapi_billing_event_responses_total"
	for _, c := range []struct {
		result string
		want   float64
	}{{"rendered", 4}, {"shared", 2}} {
		got := after.value(family, map[string]string{"result": c.result}) - before.value(family, map[string]string{"result": c.result})
		if got != c.want {
			t.Errorf("%s{result=%q} grew by %v for 2 events to 3 subscribers (2 with one subscription), want %v", family, c.result, got, c.want)
		}
	}
}

func TestBillingEventsAcrossTwoServers(t *testing.T) {
	dbURL := testenv.Postgres(t)
	redisURL, prefix := testenv.Redis(t)
	fake := stripefake.New(t, testenv.StripeMock(t))
	fake.SetPrices(catalogPrices()...)
	env := withStripe(fake.URL, map[string]string{"REDIS_URL": redisURL, "REDIS_KEY_PREFIX": prefix})
	a := startServer(t, dbURL, env)
	b := startServer(t, dbURL, env)

	alice, carol := a.token(t, "alice", false), a.token(t, "carol", false)
	ws := a.createWorkspace(t, alice, "Shared")
	if r := a.addMember(t, alice, ws, "carol", "MEMBER"); r.Code() != "" {
		t.Fatal(r.Raw)
	}

	onB := beDial(t, b, carol)
	onB.subscribe(t, "1", ws)
	onA := beDial(t, a, alice)
	onA.subscribe(t, "1", ws)
	beWaitSubscribers(t, b, 1, wsReadTimeout)
	beWaitSubscribers(t, a, 1, wsReadTimeout)

	created := time.Now().Add(-time.Minute)
	eventID, piID := bePostPaymentSucceeded(t, a, ws, "alice", 1500, created)

	beCheckPaymentEvent(t, "carol on server B", onB.nextEvent(t, "1"), eventID, piID, ws, 1500, created)
	beCheckPaymentEvent(t, "alice on server A", onA.nextEvent(t, "1"), eventID, piID, ws, 1500, created)

	// Both servers run a webhook worker on the shared database; the event
	// is applied, and so published, once.
	onB.expectNothing(t, "carol on server B (second copy)", time.Second)
	onA.expectNothing(t, "alice on server A (second copy)", 100*time.Millisecond)
}

func TestBillingEventsResubscribeAfterRedisRestart(t *testing.T) {
	// The Redis servers outlive the API server: this cleanup is registered
	// first, so it runs last.
	var redises []*miniredis.Miniredis
	t.Cleanup(func() {
		for _, r := range redises {
			r.Close()
		}
	})
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatalf("start miniredis: %v", err)
	}
	redises = append(redises, mr)
	addr := mr.Addr()

	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{
		"REDIS_URL": "redis://" + addr, "REDIS_KEY_PREFIX": "test:be-restart:",
	})
	carol := beDial(t, w.testServer, w.carol)
	carol.subscribe(t, "1", w.wsA)
	beWaitSubscribers(t, w.testServer, 1, wsReadTimeout)

	created := time.Now().Add(-time.Minute)
	eventID, piID := bePostPaymentSucceeded(t, w.testServer, w.wsA, "alice", 1000, created)
	beCheckPaymentEvent(t, "before the restart", carol.nextEvent(t, "1"), eventID, piID, w.wsA, 1000, created)

	// Redis goes away, then comes back on the same address.
	mr.Close()
	time.Sleep(500 * time.Millisecond)
	mr2 := miniredis.NewMiniRedis()
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err = mr2.StartAddr(addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("restart miniredis on %s: %v", addr, err)
	}
	redises = append(redises, mr2)
	if n := w.Bus.Subscribers(); n != 1 {
		t.Errorf("the websocket subscriber left the bus during the outage: subscribers = %d, want 1", n)
	}

	// Post an event every 500ms until one reaches the subscriber (the bus
	// re-subscribes on its own); events published before it has are lost
	// by design (at-most-once pub/sub).
	posted := map[string]bool{}
	var got *beEvent
	start := time.Now()
	for deadline := start.Add(15 * time.Second); got == nil && time.Now().Before(deadline); {
		id, _ := bePostPaymentSucceeded(t, w.testServer, w.wsA, "alice", 1000, time.Now())
		posted[id] = true
		m, err := carol.next(500 * time.Millisecond)
		switch {
		case errors.Is(err, errBeTimeout):
			continue
		case err != nil:
			t.Fatalf("the subscriber's socket ended during the Redis restart: %v", err)
		}
		if m.Type != "next" || m.ID != "1" {
			t.Fatalf("got %s id=%q payload=%s, want next for subscription 1", m.Type, m.ID, m.Payload)
		}
		ev := beDecodeEvent(t, m)
		if !posted[ev.EventID] {
			t.Fatalf("got event %s, which was not posted after the restart (posted %v)", ev.EventID, posted)
		}
		got = &ev
	}
	if got == nil {
		t.Fatalf("BUG: no billing event reached the websocket subscriber within 15s after Redis came back "+
			"(%d events posted, bus subscribers = %d): the event bus did not re-subscribe", len(posted), w.Bus.Subscribers())
	}
	t.Logf("events flow again %s after Redis returned (%d posted)", time.Since(start).Round(time.Millisecond), len(posted))

	// Steady state again: the next event arrives promptly. Drain any late
	// copies of the probes first.
	for {
		m, err := carol.next(time.Second)
		if errors.Is(err, errBeTimeout) {
			break
		}
		if err != nil {
			t.Fatalf("socket ended: %v", err)
		}
		if ev := beDecodeEvent(t, m); !posted[ev.EventID] {
			t.Fatalf("unexpected event %s", ev.EventID)
		}
	}
	created = time.Now()
	eventID, piID = bePostPaymentSucceeded(t, w.testServer, w.wsA, "alice", 2500, created)
	beCheckPaymentEvent(t, "after the restart", carol.nextEvent(t, "1"), eventID, piID, w.wsA, 2500, created)
}

func TestBillingEventsSubscriptionEndsWithTheSocket(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)

	t.Run("CloseHandshake", func(t *testing.T) {
		carol := beDial(t, w.testServer, w.carol)
		carol.subscribe(t, "1", w.wsA)
		beWaitSubscribers(t, w.testServer, 1, wsReadTimeout)
		_ = carol.c.Close(websocket.StatusNormalClosure, "bye")
		beWaitSubscribers(t, w.testServer, 0, 2*time.Second)
	})

	t.Run("AbruptClose", func(t *testing.T) {
		carol := beDial(t, w.testServer, w.carol)
		carol.subscribe(t, "1", w.wsA)
		carol.subscribe(t, "2", w.wsA)
		beWaitSubscribers(t, w.testServer, 2, wsReadTimeout)
		_ = carol.c.CloseNow()
		beWaitSubscribers(t, w.testServer, 0, 2*time.Second)
	})

	t.Run("CompleteEndsOnlyThatSubscription", func(t *testing.T) {
		carol := beDial(t, w.testServer, w.carol)
		carol.subscribe(t, "1", w.wsA)
		carol.subscribe(t, "2", w.wsA)
		beWaitSubscribers(t, w.testServer, 2, wsReadTimeout)
		wsSend(t, carol.c, map[string]any{"id": "1", "type": "complete"})
		beWaitSubscribers(t, w.testServer, 1, 2*time.Second)

		created := time.Now()
		eventID, piID := bePostPaymentSucceeded(t, w.testServer, w.wsA, "alice", 777, created)
		m, err := carol.next(wsReadTimeout)
		if err != nil {
			t.Fatalf("waiting for the event on subscription 2: %v", err)
		}
		if m.Type == "complete" && m.ID == "1" {
			// gqlgen echoes complete for an operation the client completed
			// (graphql-transport-ws does not ask for it, but it is harmless).
			m = carol.expect(t, "next", "2")
		}
		if m.Type != "next" || m.ID != "2" {
			t.Fatalf("got %s id=%q payload=%s, want next id=2", m.Type, m.ID, m.Payload)
		}
		beCheckPaymentEvent(t, "subscription 2", beDecodeEvent(t, m), eventID, piID, w.wsA, 777, created)
		carol.expectNothing(t, "completed subscription 1", 500*time.Millisecond)

		_ = carol.c.Close(websocket.StatusNormalClosure, "")
		beWaitSubscribers(t, w.testServer, 0, 2*time.Second)
	})
}
