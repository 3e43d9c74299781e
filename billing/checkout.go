package billing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/billing/stripemeta"
	"billingapi/ent"
	"billingapi/ent/checkoutsession"
	"billingapi/ent/payment"
	"billingapi/ent/predicate"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// CheckoutInput asks for a hosted Stripe Checkout page.
type CheckoutInput struct {
	WorkspaceID uuid.UUID
	LookupKey   string
	// Mode is "payment" (one-time price) or "subscription" (recurring).
	Mode     string
	Quantity int64
	// IdempotencyKey is optional: with it, a retry returns the same
	// session, and the key with other details is refused; without it,
	// identical requests within the same ten minutes share one session (a
	// double click opens one page).
	IdempotencyKey string
	// AllowPromotionCodes lets the customer enter a promotion code on
	// Stripe's page.
	AllowPromotionCodes bool
}

// MaxCheckoutQuantity bounds a line item's quantity (seats, units).
const MaxCheckoutQuantity = 10_000

// checkoutBucket is the window within which identical checkout requests
// without an idempotency key share one session.
const checkoutBucket = 10 * time.Minute

// CreateCheckoutSession creates a hosted Checkout Session for a plan
// (owners and admins) and records it. The price comes from the lookup key;
// the session's metadata (and, in subscription mode, the subscription's)
// names the workspace so that webhooks can find it. Nothing is granted
// here: access follows the checkout.session.completed webhook.
func (s *Service) CreateCheckoutSession(ctx context.Context, in CheckoutInput) (*ent.CheckoutSession, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	if err := ValidateLookupKey("lookupKey", in.LookupKey); err != nil {
		return nil, err
	}
	mode := checkoutsession.Mode(in.Mode)
	if checkoutsession.ModeValidator(mode) != nil {
		return nil, InvalidInput("mode", "Mode must be PAYMENT or SUBSCRIPTION.")
	}
	if in.Quantity < 1 || in.Quantity > MaxCheckoutQuantity {
		return nil, InvalidInput("quantity", fmt.Sprintf("Quantity must be between 1 and %d.", MaxCheckoutQuantity))
	}
	if in.IdempotencyKey != "" && !validIdempotencyKey(in.IdempotencyKey) {
		return nil, InvalidInput("idempotencyKey", "Idempotency key must be 1 to 255 printable characters without spaces.")
	}
	if _, _, err := s.requireRole(ctx, in.WorkspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
		return nil, err
	}
	plan, err := s.Price(ctx, in.LookupKey)
	if ErrorCode(err) == CodeNotFound {
		return nil, InvalidInput("lookupKey", "No plan has this lookup key.")
	}
	if err != nil {
		return nil, err
	}
	recurring := plan.Interval != ""
	if recurring != (mode == checkoutsession.ModeSubscription) {
		return nil, InvalidInput("mode", "SUBSCRIPTION needs a recurring price and PAYMENT a one-time price.")
	}
	planName := plan.Product.Plan
	if planName == "" {
		planName = plan.LookupKey
	}
	customerID, err := s.EnsureCustomer(ctx, in.WorkspaceID)
	if err != nil {
		return nil, err
	}
	meta, err := stripemeta.CheckoutSession(in.WorkspaceID, v.UserID, planName)
	if err != nil {
		return nil, fmt.Errorf("checkout metadata: %w", err)
	}

	bound := requestParams{"lookupKey": in.LookupKey, "mode": string(mode), "quantity": fmt.Sprint(in.Quantity),
		"allowPromotionCodes": fmt.Sprint(in.AllowPromotionCodes)}
	// The client's key names the request alone, so that the claim finds
	// it with other details and refuses them. Without one, equal requests
	// share a key (a double click), and other details make another.
	reqKey := idempotencyKey("cs", in.WorkspaceID.String(), v.UserID, in.IdempotencyKey)
	if in.IdempotencyKey == "" {
		key := func(distinct string) string {
			return idempotencyKey("cs", in.WorkspaceID.String(), v.UserID, bound.fingerprint(), distinct)
		}
		if reqKey, err = s.doubleClickKey(ctx, key, "t"+fmt.Sprint(time.Now().Unix()/int64(checkoutBucket.Seconds()))); err != nil {
			return nil, err
		}
	}
	// A workspace has one subscription: Checkout would start a second one,
	// billed beside the first. A repeat of a request already made is
	// answered with its session, even once that session has subscribed the
	// workspace; the claim repeats the check under a lock.
	if mode == checkoutsession.ModeSubscription {
		repeat, err := s.db.CheckoutSession.Query().Where(checkoutsession.RequestKey(reqKey)).Exist(ctx)
		if err != nil {
			return nil, err
		}
		if !repeat {
			if live, err := hasLiveSubscription(ctx, s.db, in.WorkspaceID, reqKey); err != nil {
				return nil, err
			} else if live {
				return nil, errSecondSubscription
			}
			if err := s.expireOtherSubscriptionCheckouts(ctx, in.WorkspaceID, reqKey); err != nil {
				return nil, err
			}
		}
	}
	row, mine, err := claimRequest(ctx, s.checkoutClaim(reqKey, bound, in.WorkspaceID, mode, plan, planName, in.Quantity, v.UserID))
	if err != nil {
		return nil, err
	}
	if !mine {
		return row, nil
	}

	params := &stripe.CheckoutSessionParams{
		Mode:              stripe.String(string(mode)),
		Customer:          stripe.String(customerID),
		ClientReferenceID: stripe.String(in.WorkspaceID.String()),
		LineItems:         []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(plan.PriceID), Quantity: stripe.Int64(in.Quantity)}},
		SuccessURL:        stripe.String(s.cfg.BaseURL + "/payment/success?session_id={CHECKOUT_SESSION_ID}"),
		CancelURL:         stripe.String(s.cfg.BaseURL + "/payment/cancelled"),
		Metadata:          meta,
	}
	if in.AllowPromotionCodes {
		params.AllowPromotionCodes = stripe.Bool(true)
	}
	if mode == checkoutsession.ModeSubscription {
		subMeta, err := stripemeta.Subscription(in.WorkspaceID, planName)
		if err != nil {
			return nil, fmt.Errorf("subscription metadata: %w", err)
		}
		params.SubscriptionData = &stripe.CheckoutSessionSubscriptionDataParams{Metadata: subMeta}
	} else {
		piMeta, err := stripemeta.PaymentIntent(in.WorkspaceID, v.UserID, "checkout_"+planName)
		if err != nil {
			return nil, fmt.Errorf("payment metadata: %w", err)
		}
		params.PaymentIntentData = &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: piMeta}
	}
	params.Context = ctx
	params.SetIdempotencyKey(reqKey)
	sess, err := createForWorkspace(ctx, s, in.WorkspaceID, "checkout_session.create", s.db.CheckoutSession.DeleteOneID(row.ID).Exec,
		func() (*stripe.CheckoutSession, error) { return s.stripe.CheckoutSessions.New(params) })
	if err != nil {
		return nil, err
	}
	status := checkoutsession.StatusOpen
	if sess.Status != "" {
		status = checkoutsession.Status(sess.Status)
	}
	// Stripe has the session now: it is recorded even if the client has gone.
	return s.db.CheckoutSession.UpdateOneID(row.ID).
		SetStripeSessionID(sess.ID).SetURL(sess.URL).SetStatus(status).
		Save(context.WithoutCancel(ctx))
}

// checkoutClaim returns the claim steps for a checkout request.
func (s *Service) checkoutClaim(reqKey string, bound requestParams, ws uuid.UUID, mode checkoutsession.Mode, plan *Plan, planName string, qty int64, userID string) claimOps[*ent.CheckoutSession] {
	id := claimID(reqKey, bound)
	return claimOps[*ent.CheckoutSession]{
		insert: func(ctx context.Context) (*ent.CheckoutSession, error) {
			var row *ent.CheckoutSession
			err := WithTx(ctx, s.db, func(tx *ent.Tx) error {
				if mode == checkoutsession.ModeSubscription {
					// Under the lock subscriptionClaim takes, so that a
					// subscription created meanwhile is seen.
					if err := s.lockWorkspaceBilling(ctx, tx, ws); err != nil {
						return err
					}
					// A repeat goes on to find its own row.
					repeat, err := tx.CheckoutSession.Query().Where(checkoutsession.RequestKey(reqKey)).Exist(ctx)
					if err != nil {
						return err
					}
					if !repeat {
						if err := refuseSecondSubscription(ctx, tx.Client(), ws, reqKey); err != nil {
							return err
						}
					}
				}
				var err error
				row, err = tx.CheckoutSession.Create().SetID(id).
					SetWorkspaceID(ws).SetRequestKey(reqKey).SetMode(mode).SetLookupKey(plan.LookupKey).
					SetPriceID(plan.PriceID).SetPlan(planName).SetQuantity(qty).SetCreatedBy(userID).
					SetStatus(checkoutsession.StatusCreating).
					Save(ctx)
				return err
			})
			return row, err
		},
		find: func(ctx context.Context) (*ent.CheckoutSession, error) {
			return s.db.CheckoutSession.Query().Where(checkoutsession.RequestKey(reqKey)).Only(ctx)
		},
		sameRequest: func(c *ent.CheckoutSession) bool {
			// Older rows' request keys were made otherwise (with every
			// detail in them): no request finds one by its key now.
			return claimedWith(c.ID, id, func() bool { return false })
		},
		pending: func(c *ent.CheckoutSession) (bool, time.Time) {
			return c.Status == checkoutsession.StatusCreating, c.UpdateTime
		},
		removeStale: func(ctx context.Context, c *ent.CheckoutSession, touched time.Time) (bool, error) {
			n, err := s.db.CheckoutSession.Delete().
				Where(checkoutsession.ID(c.ID), checkoutsession.StatusEQ(checkoutsession.StatusCreating), checkoutsession.UpdateTime(touched)).
				Exec(ctx)
			return n == 1, err
		},
	}
}

// doubleClickKey returns the request key of a Checkout request made
// without an idempotency key: identical requests within the same ten
// minutes (bucket) share one, so that a double click opens one page; but
// once that page is paid or has expired, the same request again is a new
// purchase, and gets a key of its own.
func (s *Service) doubleClickKey(ctx context.Context, key func(distinct string) string, bucket string) (string, error) {
	distinct := bucket
	for {
		reqKey := key(distinct)
		row, err := s.db.CheckoutSession.Query().Where(checkoutsession.RequestKey(reqKey)).Only(ctx)
		switch {
		case ent.IsNotFound(err):
			return reqKey, nil
		case err != nil:
			return "", err
		case row.Status != checkoutsession.StatusComplete && row.Status != checkoutsession.StatusExpired:
			return reqKey, nil
		}
		distinct = bucket + ":after:" + row.ID.String()
	}
}

// errCheckoutBeingOpened answers a request to subscribe a workspace while
// another request is opening a subscription Checkout for it.
var errCheckoutBeingOpened = Errorf(CodeConflict, "Another Checkout for this workspace's subscription is being opened. Try again in a moment.")

// otherSubscriptionCheckouts selects a workspace's subscription-mode
// Checkout sessions that could still subscribe it, other than the one of
// request reqKey: open ones, and ones being opened (a claim gone stale
// belongs to a request that died, as in hasLiveSubscription).
func otherSubscriptionCheckouts(ws uuid.UUID, reqKey string) []predicate.CheckoutSession {
	return []predicate.CheckoutSession{
		checkoutsession.WorkspaceID(ws), checkoutsession.ModeEQ(checkoutsession.ModeSubscription),
		checkoutsession.Or(checkoutsession.RequestKeyIsNil(), checkoutsession.RequestKeyNEQ(reqKey)),
		checkoutsession.Or(checkoutsession.StatusEQ(checkoutsession.StatusOpen),
			checkoutsession.And(checkoutsession.StatusEQ(checkoutsession.StatusCreating), checkoutsession.UpdateTimeGT(time.Now().Add(-staleClaim)))),
	}
}

// expireOtherSubscriptionCheckouts ends a workspace's open subscription
// Checkout sessions at Stripe before a new subscription is started, by a
// new Checkout (reqKey is its request) or directly: an open session stays
// payable for a day, and each one paid would start a subscription billed
// beside the others. A session Stripe has completed meanwhile is applied,
// and the new request refused as a second subscription; one still being
// opened by another request refuses it with CONFLICT. The claims repeat
// the check under the workspace's lock.
func (s *Service) expireOtherSubscriptionCheckouts(ctx context.Context, ws uuid.UUID, reqKey string) error {
	others, err := s.db.CheckoutSession.Query().Where(otherSubscriptionCheckouts(ws, reqKey)...).All(ctx)
	if err != nil {
		return err
	}
	for _, row := range others {
		if row.StripeSessionID == nil {
			return errCheckoutBeingOpened
		}
		if err := spendWorkspaceBudget(ctx, ws); err != nil {
			return err
		}
		if err := s.expireCheckout(ctx, row); err != nil {
			return err
		}
	}
	return nil
}

// expireCheckout expires an open Checkout session at Stripe and records
// it. When Stripe refuses because the session is no longer open, the
// session is retrieved and applied: errSecondSubscription if it was
// completed, nil if it had expired.
func (s *Service) expireCheckout(ctx context.Context, row *ent.CheckoutSession) error {
	if s.stripe == nil {
		return errStripeNotConfigured
	}
	id := *row.StripeSessionID
	params := &stripe.CheckoutSessionExpireParams{}
	params.Context = ctx
	_, err := retryRateLimited(ctx, func() (*stripe.CheckoutSession, error) { return s.stripe.CheckoutSessions.Expire(id, params) })
	var se *stripe.Error
	errors.As(err, &se)
	// Expired now; or Stripe does not know it (test data deleted, other
	// keys): it can subscribe no one, and no webhook will ever end it.
	if err == nil || se != nil && se.Code == stripe.ErrorCodeResourceMissing {
		return s.db.CheckoutSession.Update().
			Where(checkoutsession.ID(row.ID), checkoutsession.StatusEQ(checkoutsession.StatusOpen)).
			SetStatus(checkoutsession.StatusExpired).Exec(context.WithoutCancel(ctx))
	}
	if se == nil || se.HTTPStatusCode != http.StatusBadRequest {
		return s.fromStripe(ctx, "checkout_session.expire", err)
	}
	get := &stripe.CheckoutSessionParams{}
	get.Context = ctx
	sess, gerr := retryRateLimited(ctx, func() (*stripe.CheckoutSession, error) { return s.stripe.CheckoutSessions.Get(id, get) })
	if gerr != nil {
		return s.fromStripe(ctx, "checkout_session.retrieve", gerr)
	}
	if err := s.ApplyCheckoutSession(auth.NewContext(ctx, auth.SystemViewer(row.WorkspaceID)), sess); err != nil {
		return err
	}
	switch sess.Status {
	case stripe.CheckoutSessionStatusComplete:
		return errSecondSubscription
	case stripe.CheckoutSessionStatusExpired:
		return nil
	}
	// Still open, and Stripe will not end it (a payment under way, say):
	// it may yet subscribe the workspace, so this request waits for it.
	s.log.WarnContext(ctx, "Stripe refused to expire an open Checkout Session", "session_id", id, "err", err)
	return errCheckoutStillOpen
}

var errCheckoutStillOpen = Errorf(CodeConflict, "Another Checkout for this workspace's subscription is still open and cannot be ended now. Finish it, or try again in a few minutes.")

// refuseSecondSubscription refuses, under the workspace's lock, a new
// subscription (reqKey is its request, made directly or through Checkout)
// beside a live one, or beside another subscription Checkout that could
// still subscribe the workspace: one opened since
// expireOtherSubscriptionCheckouts looked.
func refuseSecondSubscription(ctx context.Context, db *ent.Client, ws uuid.UUID, reqKey string) error {
	live, err := hasLiveSubscription(ctx, db, ws, reqKey)
	if err != nil {
		return err
	}
	if live {
		return errSecondSubscription
	}
	open, err := db.CheckoutSession.Query().Where(otherSubscriptionCheckouts(ws, reqKey)...).Exist(ctx)
	if err != nil {
		return err
	}
	if open {
		return errCheckoutBeingOpened
	}
	return nil
}

// SyncCheckoutSession lets the success page ask for an early update: it
// retrieves the session from Stripe (never trusting the client's word) and
// applies it through ApplyCheckoutSession, the path the
// checkout.session.completed webhook takes. Members of the session's
// workspace may call it; any other session id is NOT_FOUND.
func (s *Service) SyncCheckoutSession(ctx context.Context, sessionID string) (*ent.CheckoutSession, error) {
	if _, err := viewer(ctx); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(sessionID, "cs_") || len(sessionID) > 255 {
		return nil, notFound("checkout session")
	}
	row, err := s.db.CheckoutSession.Query().Where(checkoutsession.StripeSessionID(sessionID)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound("checkout session")
	}
	if err != nil {
		return nil, err
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	params := &stripe.CheckoutSessionParams{}
	params.Context = ctx
	sess, err := retryRateLimited(ctx, func() (*stripe.CheckoutSession, error) { return s.stripe.CheckoutSessions.Get(sessionID, params) })
	if err != nil {
		return nil, s.fromStripe(ctx, "checkout_session.retrieve", err)
	}
	// The session is applied as background work would: scoped to the
	// workspace the row belongs to.
	sys := auth.NewContext(ctx, auth.SystemViewer(row.WorkspaceID))
	if err := s.ApplyCheckoutSession(sys, sess); err != nil {
		return nil, err
	}
	return s.db.CheckoutSession.Get(ctx, row.ID)
}

// ApplyCheckoutSession records what a Stripe Checkout Session says, in
// its own transaction (see applyCheckoutSession). The context's viewer
// must be the system viewer of the session's workspace.
func (s *Service) ApplyCheckoutSession(ctx context.Context, sess *stripe.CheckoutSession) error {
	return WithTx(ctx, s.db, func(tx *ent.Tx) error {
		_, err := s.applyCheckoutSession(ctx, tx, sess)
		return err
	})
}

// applyCheckoutSession records what a Stripe Checkout Session says: a
// completed session marks the row complete and links its PaymentIntent
// (recorded as a Payment) or subscription; an expired one marks it
// expired. It reports whether anything changed: applying the same session
// twice changes nothing the second time, so the webhook and the success
// page's sync can race and the first wins. A session whose metadata names
// another workspace than the system viewer's is refused.
func (s *Service) applyCheckoutSession(ctx context.Context, tx *ent.Tx, sess *stripe.CheckoutSession) (bool, error) {
	v, ok := auth.FromContext(ctx)
	if !ok || !v.IsSystem() {
		return false, Errorf(CodeForbidden, "Checkout sessions are applied by the system.")
	}
	if ws := sess.Metadata[stripemeta.KeyWorkspaceID]; ws != "" && ws != v.SystemWorkspace.String() {
		return false, fmt.Errorf("checkout session %s names workspace %s, not %s", sess.ID, ws, v.SystemWorkspace)
	}
	q := tx.CheckoutSession.Query().Where(checkoutsession.StripeSessionID(sess.ID))
	if s.rowLocks() {
		q = q.ForUpdate()
	}
	row, err := q.Only(ctx)
	if err != nil {
		return false, err
	}
	switch {
	case row.Status == checkoutsession.StatusComplete || row.Status == checkoutsession.StatusExpired:
		return false, nil // already applied: whichever came first won
	case sess.Status == stripe.CheckoutSessionStatusExpired:
		return true, tx.CheckoutSession.UpdateOne(row).SetStatus(checkoutsession.StatusExpired).Exec(ctx)
	case sess.Status != stripe.CheckoutSessionStatusComplete:
		return false, nil
	}
	upd := tx.CheckoutSession.UpdateOne(row).SetStatus(checkoutsession.StatusComplete).SetCompletedAt(time.Now())
	if sess.Subscription != nil {
		upd.SetStripeSubscriptionID(sess.Subscription.ID)
	}
	if sess.PaymentIntent != nil {
		upd.SetStripePaymentIntentID(sess.PaymentIntent.ID)
		if err := recordCheckoutPayment(ctx, tx, row, sess); err != nil {
			return false, err
		}
	}
	return true, upd.Exec(ctx)
}

// recordCheckoutPayment records the PaymentIntent of a completed payment
// session as a Payment, unless it is recorded already.
func recordCheckoutPayment(ctx context.Context, tx *ent.Tx, row *ent.CheckoutSession, sess *stripe.CheckoutSession) error {
	exists, err := tx.Payment.Query().Where(payment.StripePaymentIntentID(sess.PaymentIntent.ID)).Exist(ctx)
	if err != nil || exists {
		return err
	}
	status := payment.StatusProcessing
	if sess.PaymentStatus == stripe.CheckoutSessionPaymentStatusPaid {
		status = payment.StatusSucceeded
	}
	return tx.Payment.Create().
		SetWorkspaceID(row.WorkspaceID).
		SetStripePaymentIntentID(sess.PaymentIntent.ID).
		SetAmount(sess.AmountTotal).
		SetCurrency(strings.ToLower(string(sess.Currency))).
		SetPurpose("checkout_" + row.Plan).
		SetCreatedBy(row.CreatedBy).
		SetStatus(status).
		Exec(ctx)
}

// checkout.session.* events (eventHandlers).

// checkoutSessionEvents handles the checkout.session.* events of
// eventHandlers.
var checkoutSessionEvents = on("checkout session", checkoutSessionRefs, (*Service).planCheckoutSession)

// checkoutSessionRefs is what a Checkout Session names: its PaymentIntent
// (the worker's lane).
func checkoutSessionRefs(cs *stripe.CheckoutSession) objectRefs {
	return objectRefs{id: cs.ID, paymentIntent: paymentIntentID(cs.PaymentIntent)}
}

// planCheckoutSession plans a checkout.session.* event: what the session
// says, applied in the workspace its metadata or customer names
// (applyCheckoutSession); a session not made through this API changes
// nothing.
func (s *Service) planCheckoutSession(ctx context.Context, ahead *readAhead, _ *Event, cs *stripe.CheckoutSession) (uuid.UUID, eventChange, error) {
	ws, err := s.workspaceFor(ctx, ahead, cs.Metadata, customerID(cs.Customer))
	if err != nil {
		return uuid.Nil, nil, err
	}
	return ws, func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		changed, err := s.applyCheckoutSession(ctx, tx, cs)
		if ent.IsNotFound(err) {
			return nil, false, nil // a session not made through this API
		}
		if err != nil || !changed {
			return nil, false, err
		}
		return &BillingEvent{}, false, nil
	}, nil
}
