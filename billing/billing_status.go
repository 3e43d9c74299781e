package billing

import (
	"context"
	"time"

	"billingapi/ent"
	"billingapi/ent/payment"
)

// Actions a workspace's billing page should ask for.
const (
	// ActionConfirmPayment: a payment waits for 3D Secure or a new card.
	ActionConfirmPayment = "CONFIRM_PAYMENT"
	// ActionUpdateCard: the default card expires this month, or payments
	// are past due.
	ActionUpdateCard = "UPDATE_PAYMENT_METHOD"
)

// WorkspaceBilling is what a billing page shows, in one place.
type WorkspaceBilling struct {
	Status *BillingStatus
	// DefaultPaymentMethod is nil without a saved default card.
	DefaultPaymentMethod *PaymentMethod
	// Upcoming is nil without a subscription.
	Upcoming *UpcomingInvoice
	// ActionsNeeded lists what the workspace's users should do now.
	ActionsNeeded []string
	// Unavailable holds the errors of the parts read from Stripe that
	// could not be read (Stripe down or rate limited): the page is answered
	// without them (DefaultPaymentMethod and Upcoming nil), and the caller
	// should report these beside it, so that "unknown" is not shown as
	// "none".
	Unavailable []error
}

// BillingOf gathers a workspace's billing page (members may read): plan,
// status and access from the status cache, the default card and the next
// invoice from Stripe, and the actions needed.
func (s *Service) BillingOf(ctx context.Context, ws *ent.Workspace, now time.Time) (*WorkspaceBilling, error) {
	st, err := s.StatusOf(ctx, ws)
	if err != nil {
		return nil, err
	}
	out := &WorkspaceBilling{Status: st, ActionsNeeded: []string{}}
	// The status, from our own records, is what access depends on: a
	// Stripe outage must not take it down with the card and the invoice.
	if ws.StripeCustomerID != nil && s.stripe != nil {
		pms, err := s.PaymentMethods(ctx, ws.ID)
		if err != nil {
			out.Unavailable = append(out.Unavailable, err)
		}
		for i := range pms {
			if pms[i].IsDefault {
				out.DefaultPaymentMethod = &pms[i]
			}
		}
		if out.Upcoming, err = s.UpcomingInvoice(ctx, ws.ID); err != nil {
			out.Unavailable = append(out.Unavailable, err)
		}
	}
	pending, err := s.db.Payment.Query().
		Where(payment.WorkspaceID(ws.ID), payment.StatusIn(payment.StatusRequiresAction, payment.StatusRequiresConfirmation)).
		Exist(ctx)
	if err != nil {
		return nil, err
	}
	if pending || (st.Subscription != nil && st.Subscription.Status == "incomplete") {
		out.ActionsNeeded = append(out.ActionsNeeded, ActionConfirmPayment)
	}
	expiring := out.DefaultPaymentMethod != nil && out.DefaultPaymentMethod.ExpYear == int64(now.Year()) &&
		out.DefaultPaymentMethod.ExpMonth == int64(now.Month())
	pastDue := st.Subscription != nil && (st.Subscription.Status == "past_due" || st.Subscription.Status == "unpaid")
	if expiring || pastDue {
		out.ActionsNeeded = append(out.ActionsNeeded, ActionUpdateCard)
	}
	return out, nil
}
