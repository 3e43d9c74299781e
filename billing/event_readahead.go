package billing

import (
	"context"

	"billingapi/ent"
	"billingapi/ent/invoice"
	"billingapi/ent/payment"
	"billingapi/ent/privacy"
	"billingapi/ent/subscription"
	"billingapi/ent/workspace"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// Planning an event reads the database twice: does the workspace its
// metadata names exist, and is its object recorded already (for another
// workspace; for a subscription, the row the same-second tie check needs).
// ApplyEvents reads these for all its events first, one query per kind,
// rather than two queries per event. The events are about distinct
// objects, so a row read ahead is as fresh as one read when its event is
// planned: planning never waited for the other events' changes.
//
// The reads themselves (workspaceFor, refuseForeignObject,
// recordedSubscription) are at the end of this file: the handlers' plans
// call them, and they answer from what was read ahead when they can.

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
		// What the object names, read when it was decoded: no second
		// parse of the payload. An event whose object is of another kind
		// is planned with reads of its own.
		refs := e.Event.refs
		if refs.id == "" {
			continue
		}
		switch refs.recorded {
		case "payment":
			pis = append(pis, refs.id)
		case "invoice":
			invs = append(invs, refs.id)
		case "subscription":
			subs = append(subs, refs.id)
		default:
			continue
		}
		if id, err := uuid.Parse(refs.workspace); err == nil {
			wsIDs = append(wsIDs, id)
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
