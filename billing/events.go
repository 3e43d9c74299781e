package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/cache"
	"billingapi/ent"
	"billingapi/ent/webhookevent"
	"billingapi/eventbus"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
)

// Stripe events are the source of truth for payment state. The webhooks
// door stores each verified event; its worker decodes the stored payload
// once (DecodeEvent) and hands it to ApplyEvents, which applies it in one
// transaction together with marking it processed, so that an event is
// applied exactly once however often Stripe delivers it.
//
// This file is the orchestration: the order of the steps, the read-ahead,
// the transaction and the announcement. What an event does is its
// object's: eventHandlers names, for each event type, the handler in the
// object's own file (payments.go, invoices.go, subscriptions.go, ...).

// eventHandlers is every Stripe event type billing applies: whether
// ApplyEvents may apply it together with other events (batched) or only
// alone, and the handler of its object, which lives in the object's file.
// A type ending in ".*" stands for every type under it that has no entry
// of its own; an event of any other type is skipped.
var eventHandlers = map[string]eventHandler{
	"payment_intent.*":                         {batched, paymentIntentEvents}, // payments.go
	"invoice.*":                                {batched, invoiceEvents},       // invoices.go
	"customer.subscription.*":                  {batched, subscriptionEvents},  // subscriptions.go
	"checkout.session.completed":               {alone, checkoutSessionEvents}, // checkout.go
	"checkout.session.expired":                 {alone, checkoutSessionEvents},
	"checkout.session.async_payment_succeeded": {alone, checkoutSessionEvents},
	"checkout.session.async_payment_failed":    {alone, checkoutSessionEvents},
	"charge.refunded":                          {alone, chargeRefundedEvents}, // refunds.go
	"refund.created":                           {alone, refundEvents},
	"refund.updated":                           {alone, refundEvents},
	"charge.refund.updated":                    {alone, refundEvents},
	"price.*":                                  {alone, catalogEvents}, // catalog.go
	"product.*":                                {alone, catalogEvents},
	"customer.deleted":                         {alone, customerDeletedEvents}, // customers.go
	"setup_intent.succeeded":                   {alone, setupIntentEvents},     // selfservice.go
	"payment_method.attached":                  {alone, paymentMethodEvents},   // payment_methods.go
	"payment_method.detached":                  {alone, paymentMethodEvents},
}

// eventHandler is an entry of eventHandlers.
type eventHandler struct {
	batch  batching
	object *objectHandler
}

// batching says whether ApplyEvents may apply events of a type together
// with others, in one transaction.
type batching bool

const (
	// batched: the events that change one payment, invoice or
	// subscription row, the bulk of a month-end burst. What planning them
	// reads is read ahead for the whole run (event_readahead.go).
	batched batching = true
	// alone: every other event is applied in a transaction of its own.
	alone batching = false
)

// handlerFor returns the entry of an event type in eventHandlers: its
// own, else that of "prefix.*" for the nearest prefix above it; false
// for a type billing does not apply.
func handlerFor(eventType string) (eventHandler, bool) {
	if h, ok := eventHandlers[eventType]; ok {
		return h, true
	}
	for i := strings.LastIndexByte(eventType, '.'); i >= 0; i = strings.LastIndexByte(eventType[:i], '.') {
		if h, ok := eventHandlers[eventType[:i+1]+"*"]; ok {
			return h, true
		}
	}
	return eventHandler{}, false
}

// BillingEvent is what a workspace's billingEvents subscribers receive
// after an event is applied: which Stripe event, and the changed object.
type BillingEvent struct {
	EventID      string            `json:"event_id"`
	Type         string            `json:"type"`
	OccurredAt   time.Time         `json:"occurred_at"`
	WorkspaceID  uuid.UUID         `json:"workspace_id"`
	Payment      *ent.Payment      `json:"payment,omitempty"`
	Subscription *SubscriptionView `json:"subscription,omitempty"`
	Invoice      *ent.Invoice      `json:"invoice,omitempty"`
	Refund       *ent.Refund       `json:"refund,omitempty"`
}

// Publisher sends applied events to their workspaces' subscribers on every
// replica (eventbus.Bus), in order.
type Publisher interface {
	PublishAll(ctx context.Context, pubs []eventbus.Publication) error
}

// EventOutcome says what ApplyEvent did with an event.
type EventOutcome struct {
	// Status is processed or skipped; Duplicate is true when the event had
	// already been applied and nothing was done.
	Status    webhookevent.Status
	Reason    string
	Duplicate bool
	Workspace uuid.UUID
}

// errSkip carries the reason an event is stored as skipped.
type errSkip struct{ reason string }

func (e errSkip) Error() string { return e.reason }

func skip(format string, args ...any) error { return errSkip{fmt.Sprintf(format, args...)} }

// serviceCtx returns ctx with the webhook service viewer, which may touch
// the event table (and nothing of any workspace).
func serviceCtx(ctx context.Context) context.Context {
	return auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))
}

// systemCtx returns ctx with the system viewer of one workspace.
func systemCtx(ctx context.Context, ws uuid.UUID) context.Context {
	return auth.NewContext(ctx, auth.SystemViewer(ws))
}

// eventChange is the work of one event inside its transaction: it applies
// the change and returns what to publish (nil for nothing) and whether the
// workspace's billing status changed.
type eventChange func(ctx context.Context, tx *ent.Tx) (publish *BillingEvent, statusChanged bool, err error)

// notifyOnly is the change of an event that changes nothing we store
// (saved cards live at Stripe): its subscribers are told, so that a
// billing page can refresh.
func notifyOnly(context.Context, *ent.Tx) (*BillingEvent, bool, error) {
	return &BillingEvent{}, false, nil
}

// ApplyEvent applies the stored event eventRowID (whose payload decoded
// to ev) exactly once: in one transaction it marks the event done (only
// if it is not done already) and applies its change; after the commit it
// writes the status cache through and publishes to the workspace's
// subscribers. An event for an unknown workspace or of a type we do not
// handle is marked skipped with the reason. A returned error leaves the
// event for a retry.
func (s *Service) ApplyEvent(ctx context.Context, eventRowID uuid.UUID, ev *Event) (EventOutcome, error) {
	r := s.ApplyEvents(ctx, []StoredEvent{{RowID: eventRowID, Event: ev}})[0]
	return r.Outcome, r.Err
}

// StoredEvent is a stored event to apply: its row's id and its payload,
// decoded.
type StoredEvent struct {
	RowID uuid.UUID
	Event *Event
}

// EventResult is what applying one of ApplyEvents' events gave: as
// ApplyEvent's results.
type EventResult struct {
	Outcome EventOutcome
	Err     error
}

// ApplyEvents applies events as ApplyEvent applies each, in order, but
// commits their changes in one transaction, and refreshes each changed
// workspace's status once. The events must be about distinct Stripe
// objects: each is planned (its workspace, the owner and tie checks)
// before any of them is applied. Should the transaction fail, each event
// is applied again in its own, so that only the failing one is left for a
// retry.
func (s *Service) ApplyEvents(ctx context.Context, events []StoredEvent) []EventResult {
	results := make([]EventResult, len(events))
	var planned []*plannedEvent
	ahead := s.readAheadFor(ctx, events)
	for i, e := range events {
		ws, change, err := s.planEvent(ctx, ahead, e.Event)
		var sk errSkip
		switch {
		case errors.As(err, &sk):
			done, merr := s.skipEvent(ctx, e.RowID, sk.reason)
			results[i] = EventResult{EventOutcome{Status: webhookevent.StatusSkipped, Reason: sk.reason, Duplicate: !done}, merr}
		case err != nil:
			results[i].Err = err
		default:
			planned = append(planned, &plannedEvent{index: i, StoredEvent: e, ws: ws, change: change})
		}
	}
	committed := planned
	if err := s.applyPlanned(ctx, planned); err != nil {
		committed = nil
		if len(planned) == 1 {
			results[planned[0].index].Err = err
		} else {
			for _, p := range planned {
				if err := s.applyPlanned(ctx, []*plannedEvent{p}); err != nil {
					results[p.index].Err = err
					continue
				}
				committed = append(committed, p)
			}
		}
	}
	// Committed events are announced even if ctx has ended meanwhile:
	// otherwise they would stay unpublished, and their workspaces' cached
	// status stale.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	defer cancel()
	s.announce(actx, committed, results)
	return results
}

// planEvent finds the workspace an event is about and returns the change
// to apply, or errSkip: the handler of its object plans it
// (eventHandlers).
func (s *Service) planEvent(ctx context.Context, ahead *readAhead, ev *Event) (uuid.UUID, eventChange, error) {
	switch {
	case ev.skip != nil:
		return uuid.Nil, nil, ev.skip
	case ev.handler == nil:
		return uuid.Nil, nil, skip("unhandled event type %s", ev.Type)
	}
	return ev.handler.plan(s, ctx, ahead, ev)
}

// announceTimeout bounds the status refreshes and publications after a
// commit.
const announceTimeout = 10 * time.Second

// plannedEvent is an event that planEvent found a change for, and what
// applying it did.
type plannedEvent struct {
	StoredEvent
	index  int // in ApplyEvents' events
	ws     uuid.UUID
	change eventChange

	done          bool // false: it had been applied already
	publish       *BillingEvent
	statusChanged bool
}

// applyPlanned marks the events done and applies their changes, in one
// transaction. They are applied in the order of their workspaces' ids:
// being about distinct objects, their order does not matter, and
// concurrent transactions that take their workspaces' locks in one order
// cannot deadlock on them.
func (s *Service) applyPlanned(ctx context.Context, planned []*plannedEvent) error {
	if len(planned) == 0 {
		return nil
	}
	byWorkspace := slices.Clone(planned)
	slices.SortStableFunc(byWorkspace, func(a, b *plannedEvent) int { return bytes.Compare(a.ws[:], b.ws[:]) })
	return WithTx(ctx, s.db, func(tx *ent.Tx) error {
		fresh, err := s.finishProcessed(ctx, tx, byWorkspace)
		if err != nil {
			return err
		}
		for _, p := range byWorkspace {
			p.done, p.publish, p.statusChanged = fresh[p.RowID], nil, false
			if !p.done {
				continue
			}
			if p.publish, p.statusChanged, err = p.change(systemCtx(ctx, p.ws), tx); err != nil {
				return err
			}
		}
		return nil
	})
}

// finishProcessed marks the planned events processed in tx, each with its
// workspace, except those done already, in one statement for the whole
// run; it returns the ids it marked. The rows are the run's own (leased
// to this worker, one lane's), so locking them all at once, before the
// workspaces, cannot deadlock with another run.
func (s *Service) finishProcessed(ctx context.Context, tx *ent.Tx, planned []*plannedEvent) (map[uuid.UUID]bool, error) {
	ids := make([]any, len(planned))
	for i, p := range planned {
		ids[i] = p.RowID
	}
	now := time.Now()
	upd := entsql.Dialect(s.dialect()).Update(webhookevent.Table).
		Set(webhookevent.FieldStatus, webhookevent.StatusProcessed.String()).
		Set(webhookevent.FieldProcessedAt, now).
		Set(webhookevent.FieldUpdateTime, now).
		Set(webhookevent.FieldLastError, "").
		SetNull(webhookevent.FieldNextAttemptAt).
		SetNull(webhookevent.FieldLockedUntil)
	if slices.ContainsFunc(planned, func(p *plannedEvent) bool { return p.ws != uuid.Nil }) {
		// ELSE keeps the column's own type in the CASE, so PostgreSQL
		// takes the workspace parameters as uuids without a cast SQLite
		// would refuse.
		upd.Set(webhookevent.FieldWorkspaceID, entsql.ExprFunc(func(b *entsql.Builder) {
			b.WriteString("CASE ").Ident(webhookevent.FieldID)
			for _, p := range planned {
				if p.ws != uuid.Nil {
					b.WriteString(" WHEN ").Arg(p.RowID).WriteString(" THEN ").Arg(p.ws)
				}
			}
			b.WriteString(" ELSE ").Ident(webhookevent.FieldWorkspaceID).WriteString(" END")
		}))
	}
	query, args := upd.
		Where(entsql.And(
			entsql.In(webhookevent.FieldID, ids...),
			entsql.In(webhookevent.FieldStatus, webhookevent.StatusReceived.String(), webhookevent.StatusFailed.String()),
		)).
		Returning(webhookevent.FieldID).
		Query()
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("mark events processed: %w", err)
	}
	defer rows.Close()
	fresh := make(map[uuid.UUID]bool, len(planned))
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("mark events processed: %w", err)
		}
		fresh[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mark events processed: %w", err)
	}
	return fresh, rows.Close()
}

// announce follows committed events: it writes each changed workspace's
// status through to the cache once (as refreshStatus, with one near-cache
// invalidation for all of them), then publishes the events in order, in
// one round trip, and fills in their results.
func (s *Service) announce(ctx context.Context, committed []*plannedEvent, results []EventResult) {
	refreshed := map[uuid.UUID]bool{}
	var groups []string
	for _, p := range committed {
		if p.done && p.statusChanged && !refreshed[p.ws] {
			refreshed[p.ws] = true
			if _, _, err := s.writeStatusThrough(systemCtx(ctx, p.ws), p.ws); err != nil {
				s.log.ErrorContext(ctx, "status cache: reload after change failed", "workspace_id", p.ws, "err", err)
			}
			// Even when the reload failed: the change is committed, and
			// no replica may keep answering from before it.
			groups = append(groups, cache.WorkspaceGroup(p.ws.String()))
		}
	}
	s.invalidate(ctx, groups...)
	var pubs []eventbus.Publication
	var published []*plannedEvent
	for _, p := range committed {
		results[p.index].Outcome = EventOutcome{Status: webhookevent.StatusProcessed, Workspace: p.ws, Duplicate: !p.done}
		if !p.done || p.publish == nil || s.bus == nil {
			continue
		}
		ev := p.Event
		pub := p.publish
		pub.EventID, pub.Type, pub.WorkspaceID = ev.ID, ev.Type, p.ws
		pub.OccurredAt = ev.Created
		if b, err := json.Marshal(pub); err == nil {
			pubs = append(pubs, eventbus.Publication{WorkspaceID: p.ws.String(), Payload: b})
			published = append(published, p)
		}
	}
	if len(pubs) == 0 {
		return
	}
	if err := s.bus.PublishAll(ctx, pubs); err != nil {
		ids := make([]string, len(published))
		for i, p := range published {
			ids[i] = p.Event.ID
		}
		s.log.WarnContext(ctx, "event bus: publish failed", "event_ids", ids, "err", err)
	}
}

// skipEvent marks the event skipped, for reason, unless it is done
// already (as finishProcessed marks applied ones processed); it reports
// whether this call did it.
func (s *Service) skipEvent(ctx context.Context, id uuid.UUID, reason string) (bool, error) {
	n, err := s.db.WebhookEvent.Update().
		Where(webhookevent.ID(id), webhookevent.StatusIn(webhookevent.StatusReceived, webhookevent.StatusFailed)).
		SetStatus(webhookevent.StatusSkipped).SetProcessedAt(time.Now()).ClearNextAttemptAt().ClearLockedUntil().SetLastError(reason).
		Save(serviceCtx(ctx))
	return n == 1, err
}
