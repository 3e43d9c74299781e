package billing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// UpcomingInvoice is Stripe's preview of the next charge.
type UpcomingInvoice struct {
	AmountDue int64
	Currency  string
	// NextPaymentAttempt is when Stripe will charge it; nil if unknown.
	NextPaymentAttempt *time.Time
	PeriodStart        *time.Time
	PeriodEnd          *time.Time
	// ProrationAmount is the part of AmountDue that prorations make up
	// (a plan change's credit and charge); 0 without a change.
	ProrationAmount int64
}

// UpcomingInvoice previews the workspace's next invoice (members may
// read); nil when it has no subscription.
func (s *Service) UpcomingInvoice(ctx context.Context, workspaceID uuid.UUID) (*UpcomingInvoice, error) {
	ws, err := s.Workspace(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil || row == nil || ws.StripeCustomerID == nil || subscriptionEnded(row.Status) {
		return nil, err
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	inv, err := s.upcoming(ctx, preview{customer: *ws.StripeCustomerID, subscription: row.StripeSubscriptionID})
	if errors.Is(err, errNoUpcomingInvoice) {
		return nil, nil // e.g. the subscription ends at the period's end
	}
	return inv, err
}

// errNoUpcomingInvoice is Stripe's invoice_upcoming_none: the subscription
// will not invoice again (it is set to cancel at the period's end).
var errNoUpcomingInvoice = InvalidInput("lookupKey", "This subscription has no next invoice: it ends at the end of its period. Resume it first.")

// PreviewPlanChange previews the invoice a plan change would produce,
// prorations included, without changing anything (owners and admins).
func (s *Service) PreviewPlanChange(ctx context.Context, workspaceID uuid.UUID, lookupKey string, quantity int64) (*UpcomingInvoice, error) {
	if err := ValidateLookupKey("lookupKey", lookupKey); err != nil {
		return nil, err
	}
	if quantity < 1 || quantity > MaxCheckoutQuantity {
		return nil, InvalidInput("quantity", fmt.Sprintf("Quantity must be between 1 and %d.", MaxCheckoutQuantity))
	}
	ws, row, err := s.liveSubscription(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	plan, err := s.recurringPlan(ctx, lookupKey)
	if err != nil {
		return nil, err
	}
	if ws.StripeCustomerID == nil || row.StripeItemID == "" {
		return nil, Errorf(CodeInternal, "%s", genericInternal)
	}
	return s.upcoming(ctx, preview{customer: *ws.StripeCustomerID, subscription: row.StripeSubscriptionID,
		change: &itemChange{item: row.StripeItemID, price: plan.PriceID, quantity: quantity}})
}

// preview names the upcoming invoice to ask Stripe for: a customer's
// subscription as it is, or with one item changed (prorated).
type preview struct {
	customer     string
	subscription *string
	change       *itemChange
}

type itemChange struct {
	item, price string
	quantity    int64
}

// upcoming asks Stripe for an upcoming invoice. Stripe embeds only its
// first lines; when there are more (many prorations, after several seat
// changes in one period), the prorations are summed over all of them.
func (s *Service) upcoming(ctx context.Context, p preview) (*UpcomingInvoice, error) {
	params := &stripe.InvoiceUpcomingParams{Customer: stripe.String(p.customer), Subscription: p.subscription}
	lines := &stripe.InvoiceUpcomingLinesParams{Customer: stripe.String(p.customer), Subscription: p.subscription}
	if c := p.change; c != nil {
		// Both asked as of one instant, or the lines' prorations would be
		// priced a moment later than the invoice's.
		at := stripe.Int64(time.Now().Unix())
		params.SubscriptionProrationDate, lines.SubscriptionProrationDate = at, at
		params.SubscriptionItems = []*stripe.SubscriptionItemsParams{{ID: stripe.String(c.item), Price: stripe.String(c.price), Quantity: stripe.Int64(c.quantity)}}
		params.SubscriptionProrationBehavior = stripe.String("create_prorations")
		lines.SubscriptionItems = []*stripe.InvoiceUpcomingLinesSubscriptionItemParams{{ID: stripe.String(c.item), Price: stripe.String(c.price), Quantity: stripe.Int64(c.quantity)}}
		lines.SubscriptionProrationBehavior = stripe.String("create_prorations")
	}
	params.Context = ctx
	inv, err := retryRateLimited(ctx, func() (*stripe.Invoice, error) { return s.stripe.Invoices.Upcoming(params) })
	var se *stripe.Error
	if errors.As(err, &se) && se.Code == stripe.ErrorCodeInvoiceUpcomingNone {
		return nil, errNoUpcomingInvoice
	}
	if err != nil {
		return nil, s.fromStripe(ctx, "invoice.upcoming", err)
	}
	out := &UpcomingInvoice{AmountDue: inv.AmountDue, Currency: strings.ToLower(string(inv.Currency))}
	out.NextPaymentAttempt = unixTime(inv.NextPaymentAttempt)
	out.PeriodStart, out.PeriodEnd = unixTime(inv.PeriodStart), unixTime(inv.PeriodEnd)
	if inv.Lines == nil {
		return out, nil
	}
	if !inv.Lines.HasMore {
		for _, l := range inv.Lines.Data {
			if l.Proration {
				out.ProrationAmount += l.Amount
			}
		}
		return out, nil
	}
	lines.Context = ctx
	lines.Limit = stripe.Int64(100)
	iter := s.stripe.Invoices.UpcomingLines(lines)
	for iter.Next() {
		if l := iter.InvoiceLineItem(); l.Proration {
			out.ProrationAmount += l.Amount
		}
	}
	if err := iter.Err(); err != nil {
		return nil, s.fromStripe(ctx, "invoice.upcoming_lines", err)
	}
	return out, nil
}

func unixTime(sec int64) *time.Time {
	if sec == 0 {
		return nil
	}
	t := time.Unix(sec, 0).UTC()
	return &t
}
