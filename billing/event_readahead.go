package billing

import (
	"context"
	"strings"

	"billingapi/ent"
	"billingapi/ent/invoice"
	"billingapi/ent/payment"
	"billingapi/ent/privacy"
	"billingapi/ent/subscription"
	"billingapi/ent/workspace"

	"github.com/google/uuid"
)

// Planning an event reads the database twice: does the workspace its
// metadata names exist, and is its object recorded already (for another
// workspace; for a subscription, the row the same-second tie check needs).
// ApplyEvents reads these for all its events first, one query per kind,
// rather than two queries per event. The events are about distinct
// objects, so a row read ahead is as fresh as one read when its event is
// planned: planning never waited for the other events' changes.

// readAhead is what one ApplyEvents call read ahead. A key it holds no
// entry for (an object of another kind, a workspace found by its Stripe
// customer, or a read that failed) is read when its event is planned, as
// for a single event. A nil *readAhead holds nothing.
type readAhead struct {
	workspaces    map[uuid.UUID]bool // whether it exists
	payments      map[string]*ent.Payment
	invoices      map[string]*ent.Invoice
	subscriptions map[string]*ent.Subscription // nil: none recorded
}

// readAheadFor reads ahead what planning the events will ask for.
func (s *Service) readAheadFor(ctx context.Context, events []StoredEvent) *readAhead {
	var (
		wsIDs           []uuid.UUID
		pis, invs, subs []string
	)
	for _, e := range events {
		// The object as decoded with the event (stripe-go decodes it into
		// a map too): no second parse of the payload. An event without
		// it is planned with reads of its own.
		ev := e.Event
		if ev.Data == nil {
			continue
		}
		id, _ := ev.Data.Object["id"].(string)
		if id == "" {
			continue
		}
		meta, t := ev.Data.Object["metadata"], string(ev.Type)
		switch {
		case strings.HasPrefix(t, "payment_intent."):
			pis = append(pis, id)
		case strings.HasPrefix(t, "invoice."):
			invs = append(invs, id)
			details, _ := ev.Data.Object["subscription_details"].(map[string]any)
			meta = details["metadata"]
		case strings.HasPrefix(t, "customer.subscription."):
			subs = append(subs, id)
		default:
			continue
		}
		m, _ := meta.(map[string]any)
		if ws, ok := m[metaWorkspaceID].(string); ok {
			if id, err := uuid.Parse(ws); err == nil {
				wsIDs = append(wsIDs, id)
			}
		}
	}
	// Reads across workspaces, as planning's own: of the objects the
	// events name, and of which named workspaces exist.
	all := privacy.DecisionContext(ctx, privacy.Allow)
	r := &readAhead{}
	if len(wsIDs) > 0 {
		if found, err := s.db.Workspace.Query().Where(workspace.IDIn(wsIDs...)).IDs(all); err == nil {
			r.workspaces = make(map[uuid.UUID]bool, len(wsIDs))
			for _, id := range wsIDs {
				r.workspaces[id] = false
			}
			for _, id := range found {
				r.workspaces[id] = true
			}
		}
	}
	if len(pis) > 0 {
		rows, err := s.db.Payment.Query().Where(payment.StripePaymentIntentIDIn(pis...)).All(all)
		r.payments = byKey(pis, rows, err, func(p *ent.Payment) string { return *p.StripePaymentIntentID })
	}
	if len(invs) > 0 {
		rows, err := s.db.Invoice.Query().Where(invoice.StripeInvoiceIDIn(invs...)).All(all)
		r.invoices = byKey(invs, rows, err, func(i *ent.Invoice) string { return i.StripeInvoiceID })
	}
	if len(subs) > 0 {
		rows, err := s.db.Subscription.Query().Where(subscription.StripeSubscriptionIDIn(subs...)).All(all)
		r.subscriptions = byKey(subs, rows, err, func(s *ent.Subscription) string { return *s.StripeSubscriptionID })
	}
	return r
}

// byKey maps each key read to its row, nil for none; nil after a failed
// read, so that each event reads its own. (The rows were found by their
// key, so key never meets a NULL.)
func byKey[T any](keys []string, rows []*T, err error, key func(*T) string) map[string]*T {
	if err != nil {
		return nil
	}
	m := make(map[string]*T, len(keys))
	for _, k := range keys {
		m[k] = nil
	}
	for _, row := range rows {
		m[key(row)] = row
	}
	return m
}

// workspace reports whether workspace id exists, and whether it was read
// ahead.
func (r *readAhead) workspace(id uuid.UUID) (exists, read bool) {
	if r == nil {
		return false, false
	}
	exists, read = r.workspaces[id]
	return exists, read
}

// owner returns the workspace of the recorded payment or invoice
// stripeID (uuid.Nil for none), and whether it was read ahead.
func (r *readAhead) owner(kind, stripeID string) (owner uuid.UUID, read bool) {
	if r == nil {
		return uuid.Nil, false
	}
	switch kind {
	case "payment":
		var p *ent.Payment
		if p, read = r.payments[stripeID]; p != nil {
			owner = p.WorkspaceID
		}
	case "invoice":
		var i *ent.Invoice
		if i, read = r.invoices[stripeID]; i != nil {
			owner = i.WorkspaceID
		}
	}
	return owner, read
}

// absent reports whether the payment or invoice stripeID was read ahead
// and found not recorded.
func (r *readAhead) absent(kind, stripeID string) bool {
	owner, read := r.owner(kind, stripeID)
	return read && owner == uuid.Nil
}

// subscription returns the recorded row of a subscription (nil for
// none), and whether it was read ahead.
func (r *readAhead) subscription(stripeID string) (*ent.Subscription, bool) {
	if r == nil {
		return nil, false
	}
	row, read := r.subscriptions[stripeID]
	return row, read
}
