package billing

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/billing/stripemeta"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// portalBucket is the window within which identical portal requests share
// one Stripe session (a double click opens one page).
const portalBucket = time.Minute

// BillingPortalSession returns the URL of Stripe's customer portal for a
// workspace (owners and admins), creating the workspace's customer if
// needed. returnURL must be on APP_BASE_URL's origin ("" means
// APP_BASE_URL/billing); changes made in the portal come back as
// webhooks.
func (s *Service) BillingPortalSession(ctx context.Context, workspaceID uuid.UUID, returnURL string) (string, error) {
	v, err := viewer(ctx)
	if err != nil {
		return "", err
	}
	if returnURL == "" {
		returnURL = s.cfg.BaseURL + "/billing"
	}
	if !sameOrigin(returnURL, s.cfg.BaseURL) {
		return "", InvalidInput("returnUrl", "Return URL must be on this application's site.")
	}
	if _, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
		return "", err
	}
	if s.stripe == nil {
		return "", errStripeNotConfigured
	}
	customerID, err := s.EnsureCustomer(ctx, workspaceID)
	if err != nil {
		return "", err
	}
	params := &stripe.BillingPortalSessionParams{Customer: stripe.String(customerID), ReturnURL: stripe.String(returnURL)}
	params.Context = ctx
	params.SetIdempotencyKey(idempotencyKey("portal", workspaceID.String(), v.UserID, returnURL,
		fmt.Sprint(time.Now().Unix()/int64(portalBucket.Seconds()))))
	if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
		return "", err
	}
	sess, err := retryRateLimited(ctx, func() (*stripe.BillingPortalSession, error) { return s.stripe.BillingPortalSessions.New(params) })
	if err != nil {
		return "", s.fromStripe(ctx, "billing_portal_session.create", err)
	}
	return sess.URL, nil
}

// sameOrigin reports whether raw is an absolute URL with base's scheme and
// host (no user info), so that the portal never sends a customer back to
// another site.
func sameOrigin(raw, base string) bool {
	u, err := url.Parse(raw)
	b, berr := url.Parse(base)
	return err == nil && berr == nil && u.User == nil && u.Scheme == b.Scheme &&
		strings.EqualFold(u.Host, b.Host) && u.Host != ""
}

// SetupIntentResult is what Stripe.js needs to save a card.
type SetupIntentResult struct {
	SetupIntentID string
	ClientSecret  string
}

// CreateSetupIntent starts saving a payment method for the workspace
// without charging it (owners and admins). The call carries an idempotency
// key from the workspace, the user and the client's key; no money moves,
// so no claim row is kept.
func (s *Service) CreateSetupIntent(ctx context.Context, workspaceID uuid.UUID, clientKey string) (*SetupIntentResult, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	if !validIdempotencyKey(clientKey) {
		return nil, InvalidInput("idempotencyKey", "Idempotency key must be 1 to 255 printable characters without spaces.")
	}
	if _, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
		return nil, err
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	customerID, err := s.EnsureCustomer(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	meta, err := stripemeta.PaymentIntent(workspaceID, v.UserID, "save_payment_method")
	if err != nil {
		return nil, fmt.Errorf("setup intent metadata: %w", err)
	}
	params := &stripe.SetupIntentParams{
		Customer:                stripe.String(customerID),
		Usage:                   stripe.String("off_session"),
		Metadata:                meta,
		AutomaticPaymentMethods: &stripe.SetupIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)},
	}
	params.Context = ctx
	params.SetIdempotencyKey(idempotencyKey("seti", workspaceID.String(), v.UserID, clientKey))
	if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
		return nil, err
	}
	si, err := retryRateLimited(ctx, func() (*stripe.SetupIntent, error) { return s.stripe.SetupIntents.New(params) })
	if err != nil {
		return nil, s.fromStripe(ctx, "setup_intent.create", err)
	}
	return &SetupIntentResult{SetupIntentID: si.ID, ClientSecret: si.ClientSecret}, nil
}

// setup_intent.succeeded events (eventHandlers).

// setupIntentEvents handles setup_intent.succeeded events.
var setupIntentEvents = on("setup intent", setupIntentRefs, (*Service).planSetupIntent)

// setupIntentRefs is what a SetupIntent names: nothing beyond itself.
func setupIntentRefs(si *stripe.SetupIntent) objectRefs { return objectRefs{id: si.ID} }

// planSetupIntent plans a setup_intent.succeeded event: a saved card,
// which we do not store, told to the subscribers of the workspace its
// metadata or customer names (notifyOnly).
func (s *Service) planSetupIntent(ctx context.Context, ahead *readAhead, _ *Event, si *stripe.SetupIntent) (uuid.UUID, eventChange, error) {
	ws, err := s.workspaceFor(ctx, ahead, si.Metadata, customerID(si.Customer))
	if err != nil {
		return uuid.Nil, nil, err
	}
	return ws, notifyOnly, nil
}
