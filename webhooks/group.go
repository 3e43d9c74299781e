package webhooks

import (
	"context"
	"sync"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/webhookevent"

	"github.com/stripe/stripe-go/v76"
)

// Group commit. In a burst (month-end renewals) Stripe posts many events
// at once; each request storing its own row would cost the database a
// statement and a commit each, and the server a round trip each. The
// endpoint instead stores the rows of the requests that are waiting
// together, in one multi-row INSERT. No request waits for company: the
// first request finds no statement running and stores its row at once;
// the requests that arrive while a statement runs are stored together by
// the next one. Each request is still answered only once the statement
// holding its row has committed.

const (
	// maxGroup is the most rows one INSERT stores.
	maxGroup = 64
	// maxInFlight is how many INSERTs of one server may run at once: two,
	// so that the next group is built while the database writes the last.
	maxInFlight = 2
)

// groupStore stores the events of concurrent webhook requests together.
// Its zero value is not usable: it needs db.
type groupStore struct {
	db *ent.Client

	mu       sync.Mutex
	queue    []*pendingEvent
	inFlight int // INSERTs running, at most maxInFlight
}

// pendingEvent is one request's event, waiting to be stored.
type pendingEvent struct {
	ev       *stripe.Event
	objectID string // eventObjectID(ev)
	body     []byte
	// done receives the outcome once. It is buffered, so that storing
	// never waits for a request that has given up.
	done chan error
}

// store saves the event, which checkStorable passed, and returns once it
// is committed (nil, also for a duplicate), or when storing it failed or
// ctx ended. A request that gives up may still see its event stored
// afterwards; Stripe's retry then finds it a duplicate, so nothing is lost
// either way.
func (g *groupStore) store(ctx context.Context, ev *stripe.Event, objectID string, body []byte) error {
	p := &pendingEvent{ev: ev, objectID: objectID, body: body, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, p)
	lead := g.inFlight < maxInFlight
	if lead {
		g.inFlight++
	}
	g.mu.Unlock()
	if lead {
		g.flush()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush stores one group from the head of the queue in one INSERT. If
// requests are still queued after it, it passes its turn to a new
// goroutine rather than storing them itself, so that the request whose
// goroutine runs it is answered now.
func (g *groupStore) flush() {
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	group := make([]*pendingEvent, n)
	copy(group, g.queue)
	g.queue = g.queue[n:]
	g.mu.Unlock()

	defer g.next() // also after a panic, which net/http recovers from
	g.insert(group)
}

// next follows a flush: it hands the turn on while requests are queued,
// else gives it back.
func (g *groupStore) next() {
	g.mu.Lock()
	more := len(g.queue) > 0
	if !more {
		g.inFlight--
		g.queue = nil // let the emptied array go
	}
	g.mu.Unlock()
	if more {
		go g.flush()
	}
}

// insert stores group in one statement. Should the statement fail, each
// event is stored on its own, so that one event the database refuses does
// not fail the others with it.
func (g *groupStore) insert(group []*pendingEvent) {
	if len(group) == 0 {
		return
	}
	// The statement serves many requests: no single one's cancellation
	// may cut it short.
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	ctx = auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))
	rows := make([]*ent.WebhookEventCreate, len(group))
	for i, p := range group {
		rows[i] = newEventRow(g.db, p.ev, p.objectID, p.body)
	}
	// Duplicates, of stored events or within the group, are skipped.
	err := g.db.WebhookEvent.CreateBulk(rows...).
		OnConflictColumns(webhookevent.FieldStripeEventID).DoNothing().
		Exec(ctx)
	if err == nil || len(group) == 1 {
		for _, p := range group {
			p.done <- err
		}
		return
	}
	for _, p := range group {
		_, err := Store(ctx, g.db, p.ev, p.body)
		p.done <- err
	}
}
