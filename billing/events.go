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
	"billingapi/ent/invoice"
	"billingapi/ent/payment"
	"billingapi/ent/privacy"
	"billingapi/ent/subscription"
	"billingapi/ent/webhookevent"
	"billingapi/ent/workspace"
	"billingapi/eventbus"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// Stripe events are the source of truth for payment state. The webhooks
// door stores each verified event and hands it to ApplyEvent, which
// applies it in one transaction together with marking it processed, so
// that an event is applied exactly once however often Stripe delivers it.

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

// ApplyEvent applies the stored event eventRowID (whose payload is ev)
// exactly once: in one transaction it marks the event done (only if it is
// not done already) and applies its change; after the commit it writes the
// status cache through and publishes to the workspace's subscribers. An
// event for an unknown workspace or of a type we do not handle is marked
// skipped with the reason. A returned error leaves the event for a retry.
func (s *Service) ApplyEvent(ctx context.Context, eventRowID uuid.UUID, ev *stripe.Event) (EventOutcome, error) {
	r := s.ApplyEvents(ctx, []StoredEvent{{RowID: eventRowID, Event: ev}})[0]
	return r.Outcome, r.Err
}

// StoredEvent is a stored event to apply: its row's id and its payload.
type StoredEvent struct {
	RowID uuid.UUID
	Event *stripe.Event
}

// EventResult is what applying one of ApplyEvents' events gave: as
// ApplyEvent's results.
type EventResult struct {
	Outcome EventOutcome
	Err     error
}

// Batchable reports whether events of this type may be applied together
// by ApplyEvents: those that change one payment, invoice or subscription
// row, the bulk of a month-end burst.
func Batchable(eventType string) bool {
	return strings.HasPrefix(eventType, "payment_intent.") || strings.HasPrefix(eventType, "invoice.") ||
		strings.HasPrefix(eventType, "customer.subscription.")
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
		pub.EventID, pub.Type, pub.WorkspaceID = ev.ID, string(ev.Type), p.ws
		pub.OccurredAt = time.Unix(ev.Created, 0).UTC()
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

// planEvent finds the workspace an event is about and returns the change
// to apply, or errSkip. Anything that needs Stripe or the price cache is
// done here, before the transaction.
func (s *Service) planEvent(ctx context.Context, ahead *readAhead, ev *stripe.Event) (uuid.UUID, eventChange, error) {
	if ev.Data == nil || len(ev.Data.Raw) == 0 {
		return uuid.Nil, nil, skip("event has no object")
	}
	created := time.Unix(ev.Created, 0).UTC()
	t := string(ev.Type)
	switch {
	case strings.HasPrefix(t, "payment_intent."):
		var pi stripe.PaymentIntent
		if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
			return uuid.Nil, nil, skip("undecodable payment intent")
		}
		ws, err := s.workspaceFor(ctx, ahead, pi.Metadata, customerID(pi.Customer))
		if err != nil {
			return uuid.Nil, nil, err
		}
		if err := s.refuseForeignObject(ctx, ahead, ws, "payment", pi.ID); err != nil {
			return uuid.Nil, nil, err
		}
		return ws, s.paymentIntentChange(ws, &pi, t, created, ahead.absent("payment", pi.ID)), nil

	case t == "checkout.session.completed" || t == "checkout.session.expired" ||
		t == "checkout.session.async_payment_succeeded" || t == "checkout.session.async_payment_failed":
		var cs stripe.CheckoutSession
		if err := json.Unmarshal(ev.Data.Raw, &cs); err != nil {
			return uuid.Nil, nil, skip("undecodable checkout session")
		}
		ws, err := s.workspaceFor(ctx, ahead, cs.Metadata, customerID(cs.Customer))
		if err != nil {
			return uuid.Nil, nil, err
		}
		return ws, func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
			changed, err := s.applyCheckoutSession(ctx, tx, &cs)
			if ent.IsNotFound(err) {
				return nil, false, nil // a session not made through this API
			}
			if err != nil || !changed {
				return nil, false, err
			}
			return &BillingEvent{}, false, nil
		}, nil

	case strings.HasPrefix(t, "customer.subscription."):
		var sub stripe.Subscription
		if err := json.Unmarshal(ev.Data.Raw, &sub); err != nil {
			return uuid.Nil, nil, skip("undecodable subscription")
		}
		ws, err := s.workspaceFor(ctx, ahead, sub.Metadata, customerID(sub.Customer))
		if err != nil {
			return uuid.Nil, nil, err
		}
		row, err := s.recordedSubscription(ctx, ahead, ws, sub.ID)
		if err != nil {
			return uuid.Nil, nil, err
		}
		latest, tie, err := s.resolveSubscriptionTie(ctx, row, &sub, ev.ID, created)
		if err != nil {
			return uuid.Nil, nil, err
		}
		plan, err := s.planOfSubscription(ctx, latest)
		if err != nil {
			return uuid.Nil, nil, err // retried: without its plan it would grant no features
		}
		return ws, func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
			view, changed, err := s.applySubscriptionTx(ctx, tx, ws, uuid.Nil, latest, &stripeEvent{ID: ev.ID, Created: created, TieSeen: tie}, plan)
			if err != nil || !changed {
				return nil, false, err
			}
			return &BillingEvent{Subscription: view}, true, nil
		}, nil

	case strings.HasPrefix(t, "invoice."):
		var inv stripe.Invoice
		if err := json.Unmarshal(ev.Data.Raw, &inv); err != nil {
			return uuid.Nil, nil, skip("undecodable invoice")
		}
		if inv.ID == "" {
			// invoice.upcoming: a preview, not an invoice of the history.
			return uuid.Nil, nil, skip("invoice without an id")
		}
		var meta map[string]string
		if inv.SubscriptionDetails != nil {
			meta = inv.SubscriptionDetails.Metadata
		}
		ws, err := s.workspaceFor(ctx, ahead, meta, customerID(inv.Customer))
		if err != nil {
			return uuid.Nil, nil, err
		}
		if err := s.refuseForeignObject(ctx, ahead, ws, "invoice", inv.ID); err != nil {
			return uuid.Nil, nil, err
		}
		return ws, s.invoiceChange(ws, &inv, t, created, ahead.absent("invoice", inv.ID)), nil

	case strings.HasPrefix(t, "price.") || strings.HasPrefix(t, "product."):
		if err := s.invalidateCatalog(ctx, t, ev.Data.Raw); err != nil {
			return uuid.Nil, nil, err
		}
		return uuid.Nil, nil, skip("catalog event: price cache invalidated, no workspace state")

	case t == "charge.refunded":
		var ch stripe.Charge
		if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil {
			return uuid.Nil, nil, skip("undecodable charge")
		}
		ws, err := s.workspaceForPayment(ctx, ahead, ch.Metadata, customerID(ch.Customer), ch.PaymentIntent)
		if err != nil {
			return uuid.Nil, nil, err
		}
		return ws, s.chargeRefundedChange(&ch, created), nil

	case t == "refund.created" || t == "refund.updated" || t == "charge.refund.updated":
		var re stripe.Refund
		if err := json.Unmarshal(ev.Data.Raw, &re); err != nil {
			return uuid.Nil, nil, skip("undecodable refund")
		}
		ws, err := s.workspaceForPayment(ctx, ahead, re.Metadata, "", re.PaymentIntent)
		if err != nil {
			return uuid.Nil, nil, err
		}
		return ws, s.refundUpdatedChange(ws, &re, created), nil

	case t == "setup_intent.succeeded":
		var si stripe.SetupIntent
		if err := json.Unmarshal(ev.Data.Raw, &si); err != nil {
			return uuid.Nil, nil, skip("undecodable setup intent")
		}
		ws, err := s.workspaceFor(ctx, ahead, si.Metadata, customerID(si.Customer))
		if err != nil {
			return uuid.Nil, nil, err
		}
		return ws, notifyOnly, nil

	case t == "payment_method.attached" || t == "payment_method.detached":
		var pm stripe.PaymentMethod
		if err := json.Unmarshal(ev.Data.Raw, &pm); err != nil {
			return uuid.Nil, nil, skip("undecodable payment method")
		}
		customer := customerID(pm.Customer)
		if prev, ok := ev.Data.PreviousAttributes["customer"].(string); ok && customer == "" {
			customer = prev // detached: the customer it left
		}
		ws, err := s.workspaceFor(ctx, ahead, nil, customer)
		if err != nil {
			return uuid.Nil, nil, err
		}
		return ws, notifyOnly, nil

	case t == "customer.deleted":
		var c stripe.Customer
		if err := json.Unmarshal(ev.Data.Raw, &c); err != nil {
			return uuid.Nil, nil, skip("undecodable customer")
		}
		ws, err := s.workspaceFor(ctx, ahead, c.Metadata, c.ID)
		if err != nil {
			return uuid.Nil, nil, err
		}
		return ws, func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
			n, err := tx.Workspace.Update().
				Where(workspace.ID(ws), workspace.StripeCustomerID(c.ID)).
				ClearStripeCustomerID().AddBillingVersion(1).Save(ctx)
			return nil, n > 0, err
		}, nil
	}
	return uuid.Nil, nil, skip("unhandled event type %s", t)
}

// notifyOnly is the change of an event that changes nothing we store
// (saved cards live at Stripe): its subscribers are told, so that a
// billing page can refresh.
func notifyOnly(context.Context, *ent.Tx) (*BillingEvent, bool, error) {
	return &BillingEvent{}, false, nil
}

// workspaceFor finds the workspace an object belongs to: its
// metadata.workspace_id, else its Stripe customer. An unknown workspace
// is errSkip.
func (s *Service) workspaceFor(ctx context.Context, ahead *readAhead, meta map[string]string, customer string) (uuid.UUID, error) {
	if id, err := uuid.Parse(meta[metaWorkspaceID]); err == nil {
		ok, read := ahead.workspace(id)
		if !read {
			// The system viewer of that very workspace may check it exists.
			if ok, err = s.db.Workspace.Query().Where(workspace.ID(id)).Exist(systemCtx(ctx, id)); err != nil {
				return uuid.Nil, err
			}
		}
		if ok {
			return id, nil
		}
	}
	if customer != "" {
		// Finding a workspace by its customer needs a read outside any
		// one workspace's scope; it returns the id alone.
		id, err := s.db.Workspace.Query().Where(workspace.StripeCustomerID(customer)).
			OnlyID(privacy.DecisionContext(ctx, privacy.Allow))
		switch {
		case err == nil:
			return id, nil
		case !ent.IsNotFound(err):
			return uuid.Nil, err
		}
	}
	return uuid.Nil, skip("no workspace for this object (metadata.workspace_id %q, customer %q)", meta[metaWorkspaceID], customer)
}

// workspaceForPayment finds the workspace of a charge or refund: as
// workspaceFor, else through the Payment recorded for its PaymentIntent.
func (s *Service) workspaceForPayment(ctx context.Context, ahead *readAhead, meta map[string]string, customer string, pi *stripe.PaymentIntent) (uuid.UUID, error) {
	ws, err := s.workspaceFor(ctx, ahead, meta, customer)
	var sk errSkip
	if !errors.As(err, &sk) || pi == nil {
		return ws, err
	}
	// As for customers: a read outside one workspace's scope that returns
	// the workspace id alone.
	p, perr := s.db.Payment.Query().Where(payment.StripePaymentIntentID(pi.ID)).
		Only(privacy.DecisionContext(ctx, privacy.Allow))
	switch {
	case perr == nil:
		return p.WorkspaceID, nil
	case !ent.IsNotFound(perr):
		return uuid.Nil, perr
	}
	return uuid.Nil, err
}

// refuseForeignObject skips an event whose object is already recorded for
// another workspace than the one its metadata or customer names: such an
// event can never apply, and retrying it would not help. The check reads
// across workspaces and learns only the owner's id.
func (s *Service) refuseForeignObject(ctx context.Context, ahead *readAhead, ws uuid.UUID, kind, stripeID string) error {
	if owner, read := ahead.owner(kind, stripeID); read {
		return foreignOwner(owner, ws, kind, stripeID)
	}
	all := privacy.DecisionContext(ctx, privacy.Allow)
	var (
		owner uuid.UUID
		err   error
	)
	switch kind {
	case "payment":
		var p *ent.Payment
		if p, err = s.db.Payment.Query().Where(payment.StripePaymentIntentID(stripeID)).Only(all); err == nil {
			owner = p.WorkspaceID
		}
	case "invoice":
		var r *ent.Invoice
		if r, err = s.db.Invoice.Query().Where(invoice.StripeInvoiceID(stripeID)).Only(all); err == nil {
			owner = r.WorkspaceID
		}
	}
	if err != nil && !ent.IsNotFound(err) {
		return err
	}
	return foreignOwner(owner, ws, kind, stripeID)
}

// foreignOwner judges an object's recorded owner for
// refuseForeignObject and recordedSubscription: none (uuid.Nil) is fine,
// and another workspace is errSkip.
func foreignOwner(owner, ws uuid.UUID, kind, stripeID string) error {
	if owner != uuid.Nil && owner != ws {
		return skip("%s %s is recorded for another workspace than the event names", kind, stripeID)
	}
	return nil
}

// recordedSubscription returns the row of a Stripe subscription, or nil
// when none is recorded; like refuseForeignObject, it skips the event when
// the row belongs to another workspace than ws. One read serves both the
// check and resolveSubscriptionTie.
func (s *Service) recordedSubscription(ctx context.Context, ahead *readAhead, ws uuid.UUID, stripeID string) (*ent.Subscription, error) {
	row, read := ahead.subscription(stripeID)
	if !read {
		var err error
		row, err = s.db.Subscription.Query().Where(subscription.StripeSubscriptionID(stripeID)).
			Only(privacy.DecisionContext(ctx, privacy.Allow))
		switch {
		case ent.IsNotFound(err):
			return nil, nil
		case err != nil:
			return nil, err
		}
	}
	if row == nil {
		return nil, nil
	}
	if err := foreignOwner(row.WorkspaceID, ws, "subscription", stripeID); err != nil {
		return nil, err
	}
	return row, nil
}

func customerID(c *stripe.Customer) string {
	if c == nil {
		return ""
	}
	return c.ID
}

// resolveSubscriptionTie returns the subscription to apply for an event:
// the event's own object, or, when the row's last applied event has the
// same (whole-second) timestamp, what Stripe says now, since the two
// events' order cannot be told from their timestamps; tie reports the
// latter. row is the subscription's recorded row, nil if none.
func (s *Service) resolveSubscriptionTie(ctx context.Context, row *ent.Subscription, sub *stripe.Subscription, eventID string, created time.Time) (latest *stripe.Subscription, tie bool, err error) {
	if row == nil || row.LastEventAt == nil || !row.LastEventAt.Equal(created) || row.LastEventID == eventID {
		return sub, false, nil
	}
	if s.stripe == nil {
		return sub, true, nil
	}
	params := &stripe.SubscriptionParams{}
	params.Context = ctx
	fresh, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) { return s.stripe.Subscriptions.Get(sub.ID, params) })
	if err != nil {
		return nil, true, s.fromStripe(ctx, "subscription.retrieve", err)
	}
	return fresh, true, nil
}

// paymentStatusFor maps a PaymentIntent event to the Payment status it sets.
func paymentStatusFor(eventType string, pi *stripe.PaymentIntent) payment.Status {
	switch eventType {
	case "payment_intent.succeeded":
		return payment.StatusSucceeded
	case "payment_intent.payment_failed":
		return payment.StatusFailed
	}
	if err := payment.StatusValidator(payment.Status(pi.Status)); err == nil && pi.Status != "" {
		return payment.Status(pi.Status)
	}
	return ""
}

// paymentStage orders a payment's statuses by when they come in its life,
// for events of the same second.
func paymentStage(status payment.Status) int {
	switch status {
	case payment.StatusCreating, payment.StatusRequiresPaymentMethod, payment.StatusRequiresConfirmation:
		return 0
	case payment.StatusRequiresAction:
		return 1
	case payment.StatusProcessing, payment.StatusRequiresCapture:
		return 2
	default: // succeeded, failed, canceled and the refund statuses
		return 3
	}
}

// paymentIntentChange records a PaymentIntent's new status on its Payment
// (creating the row for a PaymentIntent made outside this API). A
// succeeded payment never moves back; an older event changes nothing.
//
// absent says that planning found no payment recorded for the
// PaymentIntent: the change then inserts the row straight away, one
// statement rather than a locking read and an insert, unless it has been
// recorded since, in which case it is changed as any recorded payment.
func (s *Service) paymentIntentChange(ws uuid.UUID, pi *stripe.PaymentIntent, eventType string, created time.Time, absent bool) eventChange {
	return func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		status := paymentStatusFor(eventType, pi)
		if status == "" {
			return nil, false, nil
		}
		errorCode := ""
		if pi.LastPaymentError != nil {
			errorCode = string(pi.LastPaymentError.DeclineCode)
			if errorCode == "" {
				errorCode = string(pi.LastPaymentError.Code)
			}
		}
		if absent {
			row, err := s.insertPayment(ctx, tx, ws, pi, status, errorCode, created)
			if !isNoRowsFromDoNothing(err) {
				return paymentChanged(row, err)
			}
		}
		row, err := s.lockedPayment(ctx, tx, pi.ID)
		switch {
		case ent.IsNotFound(err):
			// Another transaction may insert it first: this insert then
			// waits for it and does nothing, and the event is retried.
			row, err := s.insertPayment(ctx, tx, ws, pi, status, errorCode, created)
			if isNoRowsFromDoNothing(err) {
				err = fmt.Errorf("payment intent %s was recorded by a concurrent transaction", pi.ID)
			}
			return paymentChanged(row, err)
		case err != nil:
			return nil, false, err
		}
		if row.WorkspaceID != ws {
			return nil, false, fmt.Errorf("payment intent %s belongs to another workspace", pi.ID)
		}
		// Stripe's timestamps are whole seconds and deliveries come in any
		// order: of two events of the same second, the later stage of the
		// payment's life wins (created, then requires_action, then an
		// outcome), so a late payment_intent.created cannot undo
		// requires_action. (A retry within the second of a failure is the
		// one case this misorders; the retry's next event sets it right.)
		if last := row.LastEventAt; last != nil && (created.Before(*last) ||
			created.Equal(*last) && paymentStage(status) < paymentStage(row.Status)) {
			return nil, false, nil
		}
		// A paid payment never moves back; its refund statuses are the
		// refund events' to set. The first succeeded event of a payment
		// Stripe's API answer already showed as paid is still the webhook
		// confirmation that subscribers are told of.
		if isPaid(row.Status) {
			if status != payment.StatusSucceeded || row.LastEventAt != nil {
				return nil, false, nil
			}
			row, err = tx.Payment.UpdateOne(row).SetLastEventAt(created).Save(ctx)
			if err != nil {
				return nil, false, err
			}
			return &BillingEvent{Payment: row}, false, nil
		}
		upd := tx.Payment.UpdateOne(row).SetStatus(status).SetLastEventAt(created)
		if errorCode != "" {
			upd.SetLastErrorCode(errorCode)
		}
		row, err = upd.Save(ctx)
		if err != nil {
			return nil, false, err
		}
		return &BillingEvent{Payment: row}, false, nil
	}
}

// insertPayment records a PaymentIntent made outside this API (or whose
// webhook came first) unless a payment is recorded for it already: then
// it inserts nothing and returns sql.ErrNoRows (isNoRowsFromDoNothing).
func (s *Service) insertPayment(ctx context.Context, tx *ent.Tx, ws uuid.UUID, pi *stripe.PaymentIntent, status payment.Status, errorCode string, created time.Time) (*ent.Payment, error) {
	purpose := pi.Metadata[metaPurpose]
	if purpose == "" {
		purpose = "external"
	}
	createdBy := pi.Metadata[metaUserID]
	if createdBy == "" {
		createdBy = "stripe"
	}
	c := tx.Payment.Create().SetWorkspaceID(ws).SetStripePaymentIntentID(pi.ID).
		SetAmount(pi.Amount).SetCurrency(strings.ToLower(string(pi.Currency))).SetPurpose(purpose).
		SetCreatedBy(createdBy).SetStatus(status).SetLastEventAt(created).SetLastErrorCode(errorCode)
	c.OnConflictColumns(payment.FieldStripePaymentIntentID).DoNothing()
	return c.Save(ctx)
}

// paymentChanged is a payment change's result: the payment to publish.
func paymentChanged(row *ent.Payment, err error) (*BillingEvent, bool, error) {
	if err != nil {
		return nil, false, err
	}
	return &BillingEvent{Payment: row}, false, nil
}

// lockedPayment reads the payment of a PaymentIntent in tx, locked (with
// row locks), so that another transaction recording the same PaymentIntent
// (an event on another replica, or our own create call's answer) waits
// rather than deciding from a stale row and overwriting it.
func (s *Service) lockedPayment(ctx context.Context, tx *ent.Tx, paymentIntentID string) (*ent.Payment, error) {
	q := tx.Payment.Query().Where(payment.StripePaymentIntentID(paymentIntentID))
	if s.rowLocks() {
		q = q.ForUpdate()
	}
	return q.Only(ctx)
}

// invoiceChange records an invoice in the workspace's billing history.
// absent says that planning found none recorded: as for a payment
// (paymentIntentChange), the change then inserts it straight away.
func (s *Service) invoiceChange(ws uuid.UUID, inv *stripe.Invoice, eventType string, created time.Time, absent bool) eventChange {
	return func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		status := string(inv.Status)
		if status == "" {
			status = "open"
		}
		failed := eventType == "invoice.payment_failed"
		if eventType == "invoice.payment_succeeded" || eventType == "invoice.paid" {
			status, failed = "paid", false
		}
		subID := ""
		if inv.Subscription != nil {
			subID = inv.Subscription.ID
		}
		insert := func() (*ent.Invoice, error) {
			c := tx.Invoice.Create().SetWorkspaceID(ws).SetStripeInvoiceID(inv.ID)
			setInvoice(c.Mutation(), inv, status, failed, subID, created)
			c.OnConflictColumns(invoice.FieldStripeInvoiceID).DoNothing()
			return c.Save(ctx)
		}
		if absent {
			if row, err := insert(); !isNoRowsFromDoNothing(err) {
				return invoiceChanged(row, err)
			}
		}
		// Locked for the same reason as a payment's row.
		q := tx.Invoice.Query().Where(invoice.StripeInvoiceID(inv.ID))
		if s.rowLocks() {
			q = q.ForUpdate()
		}
		row, err := q.Only(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return nil, false, err
		}
		if row != nil && row.LastEventAt != nil {
			// Stripe's timestamps are whole seconds, and an invoice is often
			// created, finalized and paid within one: an event of the same
			// second as the last one applied may not move it back.
			last := *row.LastEventAt
			if created.Before(last) || (created.Equal(last) && invoiceStage(status) < invoiceStage(row.Status)) {
				return nil, false, nil
			}
		}
		if row == nil {
			row, err = insert()
			if isNoRowsFromDoNothing(err) {
				err = fmt.Errorf("invoice %s was recorded by a concurrent transaction", inv.ID)
			}
		} else {
			u := tx.Invoice.UpdateOne(row)
			setInvoice(u.Mutation(), inv, status, failed, subID, created)
			row, err = u.Save(ctx)
		}
		return invoiceChanged(row, err)
	}
}

// invoiceChanged is an invoice change's result: the invoice to publish.
func invoiceChanged(row *ent.Invoice, err error) (*BillingEvent, bool, error) {
	if err != nil {
		return nil, false, err
	}
	return &BillingEvent{Invoice: row}, false, nil
}

// invoiceStage orders an invoice's statuses as its life runs: a draft is
// finalized (open), then paid, voided or written off, and never goes back.
func invoiceStage(status string) int {
	switch status {
	case "draft":
		return 0
	case "open":
		return 1
	default: // paid, void, uncollectible
		return 2
	}
}

func setInvoice(m *ent.InvoiceMutation, inv *stripe.Invoice, status string, failed bool, subID string, created time.Time) {
	m.SetStatus(status)
	m.SetPaymentFailed(failed)
	m.SetAmountDue(max(inv.AmountDue, 0))
	m.SetAmountPaid(max(inv.AmountPaid, 0))
	m.SetCurrency(strings.ToLower(string(inv.Currency)))
	m.SetNumber(inv.Number)
	m.SetStripeSubscriptionID(subID)
	m.SetHostedInvoiceURL(inv.HostedInvoiceURL)
	m.SetInvoicePdf(inv.InvoicePDF)
	m.SetLastEventAt(created)
	if inv.PeriodStart != 0 {
		m.SetPeriodStart(time.Unix(inv.PeriodStart, 0).UTC())
	}
	if inv.PeriodEnd != 0 {
		m.SetPeriodEnd(time.Unix(inv.PeriodEnd, 0).UTC())
	}
}

// invalidateCatalog drops the price cache entries a price.* or product.*
// event makes stale.
func (s *Service) invalidateCatalog(ctx context.Context, eventType string, raw json.RawMessage) error {
	var obj struct {
		ID        string `json:"id"`
		LookupKey string `json:"lookup_key"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return skip("undecodable catalog object")
	}
	if strings.HasPrefix(eventType, "product.") {
		return s.prices.InvalidateProduct(ctx, obj.ID)
	}
	if err := s.prices.InvalidatePrice(ctx, obj.ID); err != nil {
		return err
	}
	if obj.LookupKey != "" {
		return s.prices.InvalidateLookupKeys(ctx, obj.LookupKey)
	}
	return nil
}
