package billing

import (
	"context"
	"fmt"

	"billingapi/auth"
	"billingapi/billing/stripemeta"
	"billingapi/ent"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// PlanChangeInput asks to move a workspace's subscription to another
// price (and quantity, for per-seat plans).
type PlanChangeInput struct {
	WorkspaceID uuid.UUID
	LookupKey   string
	Quantity    int64
	// ProrationBehavior is create_prorations (default), none or
	// always_invoice.
	ProrationBehavior string
	// PromotionCode is an optional customer-facing code, checked with
	// Stripe before use.
	PromotionCode string
}

// liveSubscription returns the workspace's current subscription when it
// can still be changed (owners and admins), with the workspace: NOT_FOUND,
// FORBIDDEN, or BAD_USER_INPUT when there is none.
func (s *Service) liveSubscription(ctx context.Context, workspaceID uuid.UUID) (*ent.Workspace, *ent.Subscription, error) {
	ws, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner, auth.RoleAdmin)
	if err != nil {
		return nil, nil, err
	}
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil {
		return nil, nil, err
	}
	if row == nil || subscriptionEnded(row.Status) {
		return nil, nil, InvalidInput("workspaceId", "This workspace has no active subscription.")
	}
	if s.stripe == nil {
		return nil, nil, errStripeNotConfigured
	}
	return ws, row, nil
}

// changeKey is the idempotency key of a change to a subscription: the
// workspace's billing version is part of it, so a retry of the same change
// replays it, while the same change asked again after anything changed is
// a new request.
func changeKey(op string, ws *ent.Workspace, row *ent.Subscription, parts ...string) string {
	return idempotencyKey(op, append([]string{ws.ID.String(), fmt.Sprint(ws.BillingVersion), *row.StripeSubscriptionID}, parts...)...)
}

// PlanChangeResult is a plan change as Stripe answered it.
type PlanChangeResult struct {
	Subscription *SubscriptionView
	// Payment is set when the subscription's latest invoice waits for the
	// customer to authenticate its payment (3D Secure), as an invoice the
	// change raised at once (ALWAYS_INVOICE) may: its PaymentIntent, status
	// and client secret, for Stripe.js. Until it is confirmed the
	// subscription is past due.
	Payment *PaymentResult
}

// ChangeSubscriptionPlan swaps the subscription's price (and quantity)
// with Stripe's proration and returns the subscription as Stripe answered.
func (s *Service) ChangeSubscriptionPlan(ctx context.Context, in PlanChangeInput) (*PlanChangeResult, error) {
	if err := ValidateLookupKey("lookupKey", in.LookupKey); err != nil {
		return nil, err
	}
	if in.Quantity < 1 || in.Quantity > MaxCheckoutQuantity {
		return nil, InvalidInput("quantity", fmt.Sprintf("Quantity must be between 1 and %d.", MaxCheckoutQuantity))
	}
	if in.ProrationBehavior == "" {
		in.ProrationBehavior = "create_prorations"
	}
	if !prorationBehaviors[in.ProrationBehavior] {
		return nil, InvalidInput("prorationBehavior", "Proration must be CREATE_PRORATIONS, NONE or ALWAYS_INVOICE.")
	}
	ws, row, err := s.liveSubscription(ctx, in.WorkspaceID)
	if err != nil {
		return nil, err
	}
	if row.StripeItemID == "" {
		return nil, Errorf(CodeInternal, "%s", genericInternal)
	}
	plan, err := s.recurringPlan(ctx, in.LookupKey)
	if err != nil {
		return nil, err
	}
	promoID := ""
	if in.PromotionCode != "" {
		if promoID, err = s.promotionCodeID(ctx, in.WorkspaceID, in.PromotionCode); err != nil {
			return nil, err
		}
	}
	planName := planNameOf(plan)
	meta, err := stripemeta.Subscription(in.WorkspaceID, planName)
	if err != nil {
		return nil, fmt.Errorf("subscription metadata: %w", err)
	}
	params := &stripe.SubscriptionParams{
		Items: []*stripe.SubscriptionItemsParams{{
			ID: stripe.String(row.StripeItemID), Price: stripe.String(plan.PriceID), Quantity: stripe.Int64(in.Quantity),
		}},
		ProrationBehavior: stripe.String(in.ProrationBehavior),
		Metadata:          meta,
	}
	if promoID != "" {
		params.PromotionCode = stripe.String(promoID)
	}
	params.AddExpand("discount.promotion_code")
	params.AddExpand("latest_invoice.payment_intent")
	params.Context = ctx
	params.SetIdempotencyKey(changeKey("sub-change", ws, row, plan.PriceID, fmt.Sprint(in.Quantity), in.ProrationBehavior, promoID))
	if err := spendWorkspaceBudget(ctx, in.WorkspaceID); err != nil {
		return nil, err
	}
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Update(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return nil, s.fromStripe(ctx, "subscription.update", err)
	}
	view, err := s.applySubscription(ctx, in.WorkspaceID, row.ID, sub, nil)
	if err != nil {
		return nil, err
	}
	return &PlanChangeResult{Subscription: view, Payment: paymentAwaitingAction(sub)}, nil
}

// paymentAwaitingAction returns the PaymentIntent of the subscription's
// latest invoice when it needs the customer to authenticate, else nil.
func paymentAwaitingAction(sub *stripe.Subscription) *PaymentResult {
	if sub.LatestInvoice == nil || sub.LatestInvoice.PaymentIntent == nil {
		return nil
	}
	pi := sub.LatestInvoice.PaymentIntent
	res := &PaymentResult{PaymentIntentID: pi.ID, Status: string(pi.Status), ClientSecret: pi.ClientSecret}
	if !res.RequiresAction() {
		return nil
	}
	return res
}

// CancelSubscription cancels the workspace's subscription at the end of
// the period (the default) or at once, and returns it as Stripe answered.
func (s *Service) CancelSubscription(ctx context.Context, workspaceID uuid.UUID, atPeriodEnd bool) (*SubscriptionView, error) {
	ws, row, err := s.liveSubscription(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
		return nil, err
	}
	var sub *stripe.Subscription
	if atPeriodEnd {
		params := &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}
		params.Context = ctx
		params.SetIdempotencyKey(changeKey("sub-cancel-at-end", ws, row))
		sub, err = retryRateLimited(ctx, func() (*stripe.Subscription, error) {
			return s.stripe.Subscriptions.Update(*row.StripeSubscriptionID, params)
		})
	} else {
		return s.cancelNow(ctx, ws, row)
	}
	if err != nil {
		return nil, s.fromStripe(ctx, "subscription.cancel", err)
	}
	return s.applySubscription(ctx, workspaceID, row.ID, sub, nil)
}

// cancelNow cancels a subscription at Stripe at once and records what
// Stripe answered.
func (s *Service) cancelNow(ctx context.Context, ws *ent.Workspace, row *ent.Subscription) (*SubscriptionView, error) {
	params := &stripe.SubscriptionCancelParams{}
	params.Context = ctx
	params.SetIdempotencyKey(changeKey("sub-cancel-now", ws, row))
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Cancel(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return nil, s.fromStripe(ctx, "subscription.cancel", err)
	}
	return s.applySubscription(ctx, ws.ID, row.ID, sub, nil)
}

// ResumeSubscription undoes a pending cancel at period end. A subscription
// that is not set to cancel is BAD_USER_INPUT.
func (s *Service) ResumeSubscription(ctx context.Context, workspaceID uuid.UUID) (*SubscriptionView, error) {
	ws, row, err := s.liveSubscription(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	if !row.CancelAtPeriodEnd {
		return nil, InvalidInput("workspaceId", "This subscription is not set to cancel.")
	}
	if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
		return nil, err
	}
	params := &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(false)}
	params.Context = ctx
	params.SetIdempotencyKey(changeKey("sub-resume", ws, row))
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Update(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return nil, s.fromStripe(ctx, "subscription.resume", err)
	}
	return s.applySubscription(ctx, workspaceID, row.ID, sub, nil)
}
