package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// A stored event is decoded once, by the worker (DecodeEvent): its
// envelope, then its object by the handler of its type (eventHandlers),
// into the Event that ApplyEvents plans and applies. What the worker's
// lanes and the read-ahead need of the object is read then too
// (objectRefs), so that nothing parses the payload again.

// objectHandler is how billing applies the events of one kind of Stripe
// object; on makes one.
type objectHandler struct {
	// decode decodes an event's object: what plan takes, and what it
	// names (objectRefs). An object that does not decode is errSkip.
	decode func(raw json.RawMessage) (any, objectRefs, error)
	// plan finds the workspace the event is about and returns the change
	// to apply, or errSkip. Anything that needs Stripe or the price cache
	// is done here, before the transaction.
	plan func(s *Service, ctx context.Context, ahead *readAhead, ev *Event) (uuid.UUID, eventChange, error)
}

// on returns the handler of events whose object is a T: the object is
// decoded once, refs reads what it names, and plan plans each event with
// it. what names the object in the skip reason of one that does not
// decode ("undecodable payment intent").
func on[T any](what string, refs func(*T) objectRefs,
	plan func(s *Service, ctx context.Context, ahead *readAhead, ev *Event, obj *T) (uuid.UUID, eventChange, error)) *objectHandler {
	return &objectHandler{
		decode: func(raw json.RawMessage) (any, objectRefs, error) {
			obj := new(T)
			if err := json.Unmarshal(raw, obj); err != nil {
				return nil, objectRefs{}, skip("undecodable %s", what)
			}
			return obj, refs(obj), nil
		},
		plan: func(s *Service, ctx context.Context, ahead *readAhead, ev *Event) (uuid.UUID, eventChange, error) {
			return plan(s, ctx, ahead, ev, ev.object.(*T))
		},
	}
}

// objectRefs is what an event's object names that is needed before its
// event is planned: its own id and the PaymentIntent it belongs to (which
// decide the worker's lane), and, for the objects whose recorded rows
// planning reads, which kind of row ("payment", "invoice" or
// "subscription") and the workspace its metadata names, read ahead for a
// whole run (event_readahead.go).
type objectRefs struct {
	id, paymentIntent string
	recorded          string
	workspace         string // metadata.workspace_id, as it is
}

// Event is a stored Stripe event as ApplyEvents takes it, decoded once by
// DecodeEvent: its envelope, and its object as the handler of its type
// decoded it.
type Event struct {
	ID      string
	Type    string
	Created time.Time // Stripe's, in whole seconds

	refs     objectRefs
	batch    batching
	handler  *objectHandler  // nil: a type billing does not apply
	object   any             // decoded by handler
	skip     error           // errSkip: no object, or one that does not decode
	previous json.RawMessage // data.previous_attributes
}

// ObjectID returns the id of the event's object, "" for none.
func (e *Event) ObjectID() string { return e.refs.id }

// PaymentIntent returns the id of the PaymentIntent the event's object
// belongs to (a charge's, a refund's, an invoice's or a Checkout
// Session's), "" for none.
func (e *Event) PaymentIntent() string { return e.refs.paymentIntent }

// Batchable reports whether ApplyEvents may apply the event together with
// others (eventHandlers says which types batch).
func (e *Event) Batchable() bool { return bool(e.batch) }

// errNotAnEvent refuses a payload whose data does not hold an object.
var errNotAnEvent = errors.New("its data has no JSON object")

// DecodeEvent decodes a stored event's payload once, for ApplyEvents: the
// envelope, then the object by the handler of its type. It refuses a
// payload that is not a Stripe event (stripe-go's Event does not decode
// it, or its data has no JSON object); an event without an object, or
// whose object its handler cannot decode, is decoded to be skipped.
func DecodeEvent(payload []byte) (*Event, error) {
	var env struct {
		// Every field of the envelope is typed as stripe-go types it, so
		// that what stripe-go refused is refused; data, whose object
		// stripe-go would also decode into a map, is kept as raw JSON.
		stripe.Event
		Data *struct {
			Object             json.RawMessage `json:"object"`
			PreviousAttributes json.RawMessage `json:"previous_attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &env); err != nil {
		return nil, err
	}
	ev := &Event{ID: env.ID, Type: string(env.Type), Created: time.Unix(env.Created, 0).UTC()}
	h, handled := handlerFor(ev.Type)
	ev.batch, ev.handler = h.batch, h.object
	if env.Data == nil {
		ev.skip = skip("event has no object")
		return ev, nil
	}
	if !objectOrNull(env.Data.Object) || len(env.Data.PreviousAttributes) > 0 && !objectOrNull(env.Data.PreviousAttributes) {
		return nil, errNotAnEvent
	}
	ev.previous = env.Data.PreviousAttributes
	if handled {
		ev.object, ev.refs, ev.skip = ev.handler.decode(env.Data.Object)
	}
	if !handled || ev.skip != nil {
		ev.refs = anyObjectRefs(env.Data.Object)
	}
	return ev, nil
}

// objectOrNull reports whether raw JSON is an object or null.
func objectOrNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && (raw[0] == '{' || bytes.Equal(raw, []byte("null")))
}

// anyObjectRefs reads the id and PaymentIntent of an object no handler
// decoded (of a type billing does not apply, or one its handler cannot
// decode), for the worker's lanes: a PaymentIntent named by its id or
// expanded.
func anyObjectRefs(raw json.RawMessage) objectRefs {
	var obj struct {
		ID            any `json:"id"`
		PaymentIntent any `json:"payment_intent"`
	}
	_ = json.Unmarshal(raw, &obj)
	r := objectRefs{}
	r.id, _ = obj.ID.(string)
	switch pi := obj.PaymentIntent.(type) {
	case string:
		r.paymentIntent = pi
	case map[string]any:
		r.paymentIntent, _ = pi["id"].(string)
	}
	return r
}

// paymentIntentID returns the id of an expandable PaymentIntent, "" for
// none.
func paymentIntentID(pi *stripe.PaymentIntent) string {
	if pi == nil {
		return ""
	}
	return pi.ID
}

// previousString returns the string the event's previous_attributes held
// for field, "" for none: what its object had before the event.
func (e *Event) previousString(field string) string {
	var prev map[string]any
	if json.Unmarshal(e.previous, &prev) != nil {
		return ""
	}
	s, _ := prev[field].(string)
	return s
}
