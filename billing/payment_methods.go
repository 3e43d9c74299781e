package billing

import (
	"context"
	"strings"

	"billingapi/auth"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// PaymentMethod is a saved card as clients may see it: display fields
// only. Nothing of a card is stored by us; these come from Stripe.
type PaymentMethod struct {
	ID        string
	Brand     string
	Last4     string
	ExpMonth  int64
	ExpYear   int64
	IsDefault bool
}

// PaymentMethods lists the cards saved on the workspace's Stripe customer
// (members may read), the default first. A workspace without a customer
// has none.
func (s *Service) PaymentMethods(ctx context.Context, workspaceID uuid.UUID) ([]PaymentMethod, error) {
	ws, err := s.Workspace(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	if ws.StripeCustomerID == nil {
		return []PaymentMethod{}, nil
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	cus, err := s.stripe.Customers.Get(*ws.StripeCustomerID, &stripe.CustomerParams{Params: stripe.Params{Context: ctx}})
	if err != nil {
		return nil, s.fromStripe(ctx, "customer.retrieve", err)
	}
	def := ""
	if cus.InvoiceSettings != nil && cus.InvoiceSettings.DefaultPaymentMethod != nil {
		def = cus.InvoiceSettings.DefaultPaymentMethod.ID
	}
	// The live subscription's own card (Checkout saves the card there, not
	// on the customer) is the one its invoices charge first.
	if own, err := s.subscriptionCard(ctx, workspaceID); err != nil {
		return nil, err
	} else if own != "" {
		def = own
	}
	params := &stripe.PaymentMethodListParams{Customer: ws.StripeCustomerID, Type: stripe.String("card")}
	params.Context = ctx
	params.Limit = stripe.Int64(100)
	params.Single = true
	out := []PaymentMethod{}
	iter := s.stripe.PaymentMethods.List(params)
	for iter.Next() {
		pm := iter.PaymentMethod()
		view := PaymentMethod{ID: pm.ID, IsDefault: pm.ID == def}
		if pm.Card != nil {
			view.Brand, view.Last4 = string(pm.Card.Brand), pm.Card.Last4
			view.ExpMonth, view.ExpYear = pm.Card.ExpMonth, pm.Card.ExpYear
		}
		if view.IsDefault {
			out = append([]PaymentMethod{view}, out...)
		} else {
			out = append(out, view)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, s.fromStripe(ctx, "payment_method.list", err)
	}
	return out, nil
}

// ownedPaymentMethod returns the workspace's customer id when the payment
// method is attached to it (owners and admins): a payment method of any
// other customer is NOT_FOUND, as if it did not exist.
func (s *Service) ownedPaymentMethod(ctx context.Context, workspaceID uuid.UUID, pmID string) (string, error) {
	if !strings.HasPrefix(pmID, "pm_") || len(pmID) > 255 {
		return "", InvalidInput("paymentMethodId", "Payment method must be a Stripe payment method id (pm_...).")
	}
	ws, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner, auth.RoleAdmin)
	if err != nil {
		return "", err
	}
	if ws.StripeCustomerID == nil {
		return "", notFound("payment method")
	}
	if s.stripe == nil {
		return "", errStripeNotConfigured
	}
	// Only Stripe knows whose card this is: the budget is spent to ask,
	// and given back by the door when the card is not the workspace's.
	if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
		return "", err
	}
	pm, err := s.stripe.PaymentMethods.Get(pmID, &stripe.PaymentMethodParams{Params: stripe.Params{Context: ctx}})
	if err != nil {
		var se *stripe.Error
		if asStripe(err, &se) && se.Code == stripe.ErrorCodeResourceMissing {
			return "", notFound("payment method")
		}
		return "", s.fromStripe(ctx, "payment_method.retrieve", err)
	}
	if pm.Customer == nil || pm.Customer.ID != *ws.StripeCustomerID {
		return "", notFound("payment method")
	}
	return *ws.StripeCustomerID, nil
}

// subscriptionCard returns the card the workspace's live subscription keeps
// as its own default, or "" when it has none (or there is no live one).
func (s *Service) subscriptionCard(ctx context.Context, workspaceID uuid.UUID) (string, error) {
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil || row == nil || row.StripeSubscriptionID == nil || subscriptionEnded(row.Status) {
		return "", err
	}
	params := &stripe.SubscriptionParams{}
	params.Context = ctx
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Get(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return "", s.fromStripe(ctx, "subscription.retrieve", err)
	}
	if sub.DefaultPaymentMethod == nil {
		return "", nil
	}
	return sub.DefaultPaymentMethod.ID, nil
}

// SetDefaultPaymentMethod makes a saved card the one invoices charge
// (owners and admins) and returns the workspace's payment methods.
func (s *Service) SetDefaultPaymentMethod(ctx context.Context, workspaceID uuid.UUID, pmID string) ([]PaymentMethod, error) {
	customerID, err := s.ownedPaymentMethod(ctx, workspaceID, pmID)
	if err != nil {
		return nil, err
	}
	params := &stripe.CustomerParams{InvoiceSettings: &stripe.CustomerInvoiceSettingsParams{DefaultPaymentMethod: stripe.String(pmID)}}
	params.Context = ctx
	if _, err := retryRateLimited(ctx, func() (*stripe.Customer, error) { return s.stripe.Customers.Update(customerID, params) }); err != nil {
		return nil, s.fromStripe(ctx, "customer.update", err)
	}
	// A subscription keeps a card of its own (saved on it with its first
	// payment), which Stripe charges before the customer's default.
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil {
		return nil, err
	}
	if row != nil && row.StripeSubscriptionID != nil && !subscriptionEnded(row.Status) {
		sub := &stripe.SubscriptionParams{DefaultPaymentMethod: stripe.String(pmID)}
		sub.Context = ctx
		if _, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
			return s.stripe.Subscriptions.Update(*row.StripeSubscriptionID, sub)
		}); err != nil {
			return nil, s.fromStripe(ctx, "subscription.update", err)
		}
	}
	return s.PaymentMethods(ctx, workspaceID)
}

// DetachPaymentMethod removes a saved card from the workspace's customer
// (owners and admins) and returns the payment methods left.
func (s *Service) DetachPaymentMethod(ctx context.Context, workspaceID uuid.UUID, pmID string) ([]PaymentMethod, error) {
	if _, err := s.ownedPaymentMethod(ctx, workspaceID, pmID); err != nil {
		return nil, err
	}
	params := &stripe.PaymentMethodDetachParams{}
	params.Context = ctx
	if _, err := retryRateLimited(ctx, func() (*stripe.PaymentMethod, error) { return s.stripe.PaymentMethods.Detach(pmID, params) }); err != nil {
		return nil, s.fromStripe(ctx, "payment_method.detach", err)
	}
	return s.PaymentMethods(ctx, workspaceID)
}

// payment_method.attached and payment_method.detached events
// (eventHandlers).

// paymentMethodEvents handles payment_method.attached and .detached
// events.
var paymentMethodEvents = on("payment method", paymentMethodRefs, (*Service).planPaymentMethod)

// paymentMethodRefs is what a payment method names: nothing beyond itself.
func paymentMethodRefs(pm *stripe.PaymentMethod) objectRefs { return objectRefs{id: pm.ID} }

// planPaymentMethod plans a payment_method.attached or .detached event: a
// card, which we do not store, told to the subscribers of the workspace of
// its customer, or of the customer it left (notifyOnly).
func (s *Service) planPaymentMethod(ctx context.Context, ahead *readAhead, ev *Event, pm *stripe.PaymentMethod) (uuid.UUID, eventChange, error) {
	customer := customerID(pm.Customer)
	if customer == "" {
		customer = ev.previousString("customer") // detached: the customer it left
	}
	ws, err := s.workspaceFor(ctx, ahead, nil, customer)
	if err != nil {
		return uuid.Nil, nil, err
	}
	return ws, notifyOnly, nil
}
