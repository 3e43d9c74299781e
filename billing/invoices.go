package billing

import (
	"context"
	"fmt"
	"strings"
	"time"

	"billingapi/ent"
	"billingapi/ent/invoice"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// A workspace's billing history: the invoices Stripe's invoice.* events
// tell of (eventHandlers), recorded as they come.

// invoiceEvents handles invoice.* events.
var invoiceEvents = on("invoice", invoiceRefs, (*Service).planInvoice)

// invoiceRefs is what an invoice names: its PaymentIntent (the worker's
// lane), and its recorded row and the workspace its subscription's
// metadata names, read ahead.
func invoiceRefs(inv *stripe.Invoice) objectRefs {
	r := objectRefs{id: inv.ID, paymentIntent: paymentIntentID(inv.PaymentIntent), recorded: "invoice"}
	if inv.SubscriptionDetails != nil {
		r.workspace = inv.SubscriptionDetails.Metadata[metaWorkspaceID]
	}
	return r
}

// planInvoice plans an invoice.* event: the invoice recorded in the
// history of the workspace its subscription's metadata or its customer
// names (invoiceChange), unless it is recorded for another. An invoice
// without an id (invoice.upcoming) is skipped.
func (s *Service) planInvoice(ctx context.Context, ahead *readAhead, ev *Event, inv *stripe.Invoice) (uuid.UUID, eventChange, error) {
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
	return ws, s.invoiceChange(ws, inv, ev.Type, ev.Created, ahead.absent("invoice", inv.ID)), nil
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
