package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/billing/stripemeta"
	"billingapi/cache"
	"billingapi/ent"
	"billingapi/ent/subscription"
	"billingapi/ent/workspace"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// liveStatuses are the subscription statuses that count as the
// workspace's one current subscription: a second may not be created while
// one of these exists.
var liveStatuses = []string{"creating", "incomplete", "trialing", "active", "past_due", "unpaid", "paused"}

// endedStatuses are the statuses a subscription never leaves: Stripe
// bills it no more, and nothing about it can be changed.
var endedStatuses = []string{"canceled", "incomplete_expired"}

// subscriptionEnded reports whether a subscription in this status has
// ended (endedStatuses).
func subscriptionEnded(status string) bool { return slices.Contains(endedStatuses, status) }

// prorationBehaviors are the proration choices Stripe accepts on a plan
// change.
var prorationBehaviors = map[string]bool{"create_prorations": true, "none": true, "always_invoice": true}

// MaxTrialDays is the longest trial Stripe allows.
const MaxTrialDays = 730

// SubscriptionView is a workspace's subscription as clients see it.
type SubscriptionView struct {
	ID                   uuid.UUID  `json:"id"`
	StripeSubscriptionID string     `json:"stripe_subscription_id"`
	Status               string     `json:"status"`
	Plan                 string     `json:"plan"`
	LookupKey            string     `json:"lookup_key"`
	Quantity             int64      `json:"quantity"`
	CurrentPeriodStart   *time.Time `json:"current_period_start,omitempty"`
	CurrentPeriodEnd     *time.Time `json:"current_period_end,omitempty"`
	CancelAtPeriodEnd    bool       `json:"cancel_at_period_end"`
	CanceledAt           *time.Time `json:"canceled_at,omitempty"`
	TrialEnd             *time.Time `json:"trial_end,omitempty"`
	Discount             *Discount  `json:"discount,omitempty"`
}

// Discount is the discount a subscription carries: a percentage or an
// amount off (in the smallest currency unit).
type Discount struct {
	Code       string  `json:"code,omitempty"`
	PercentOff float64 `json:"percent_off,omitempty"`
	AmountOff  int64   `json:"amount_off,omitempty"`
}

// BillingStatus is the snapshot the status cache keeps per workspace: the
// current subscription (nil without one) and the access it grants.
type BillingStatus struct {
	Version      int64             `json:"version"`
	Subscription *SubscriptionView `json:"subscription,omitempty"`
	Access       Access            `json:"access"`
}

func viewOf(row *ent.Subscription) *SubscriptionView {
	v := &SubscriptionView{
		ID: row.ID, Status: row.Status, Plan: row.Plan, LookupKey: row.LookupKey, Quantity: row.Quantity,
		CurrentPeriodStart: row.CurrentPeriodStart, CurrentPeriodEnd: row.CurrentPeriodEnd,
		CancelAtPeriodEnd: row.CancelAtPeriodEnd, CanceledAt: row.CanceledAt, TrialEnd: row.TrialEnd,
	}
	if row.StripeSubscriptionID != nil {
		v.StripeSubscriptionID = *row.StripeSubscriptionID
	}
	if row.DiscountCode != "" || row.DiscountPercentOff != 0 || row.DiscountAmountOff != 0 {
		v.Discount = &Discount{Code: row.DiscountCode, PercentOff: row.DiscountPercentOff, AmountOff: row.DiscountAmountOff}
	}
	return v
}

// StatusOf returns the billing status of a workspace the caller has
// already loaded through the privacy rules, from the status cache (or the
// database on a miss).
func (s *Service) StatusOf(ctx context.Context, ws *ent.Workspace) (*BillingStatus, error) {
	// Kept only if Redis holds it, as for plans.
	st, _, err := cache.GetOrLoad(ctx, s.near, cache.WorkspaceGroup(ws.ID.String()), "status", shallowCopy,
		func() (*BillingStatus, bool, error) { return s.cachedStatus(ctx, ws) })
	return st, err
}

// cachedStatus reads a workspace's status from the status cache in Redis,
// which loads it from the database on a miss, and whether Redis holds it.
func (s *Service) cachedStatus(ctx context.Context, ws *ent.Workspace) (*BillingStatus, bool, error) {
	data, stored, err := s.status.Load(ctx, ws.ID.String(), func(ctx context.Context) (int64, []byte, error) {
		st, err := s.loadStatus(ctx, ws.ID)
		if err != nil {
			return 0, nil, err
		}
		b, err := json.Marshal(st)
		return st.Version, b, err
	})
	if err != nil {
		return nil, false, err
	}
	var st BillingStatus
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, false, fmt.Errorf("decode billing status: %w", err)
	}
	if st.Version < ws.BillingVersion {
		// The snapshot missed a change: its write-through failed (Redis
		// refused it, or the process stopped after the commit). Answer from
		// the database, and put the fresh snapshot in its place.
		return s.writeStatusThrough(ctx, ws.ID)
	}
	return &st, stored, nil
}

// loadStatus reads a workspace's billing status from the database.
func (s *Service) loadStatus(ctx context.Context, workspaceID uuid.UUID) (*BillingStatus, error) {
	ws, err := s.db.Workspace.Get(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil {
		return nil, err
	}
	st := &BillingStatus{Version: ws.BillingVersion}
	if row == nil {
		st.Access = AccessFor("", nil, nil, false, s.log)
		return st, nil
	}
	st.Subscription = viewOf(row)
	st.Access = AccessFor(row.Status, row.Features, row.CriticalFeatures, row.CancelAtPeriodEnd, s.log)
	return st, nil
}

// currentSubscription returns the workspace's newest subscription that
// Stripe knows of, or nil.
func (s *Service) currentSubscription(ctx context.Context, db *ent.Client, workspaceID uuid.UUID) (*ent.Subscription, error) {
	row, err := db.Subscription.Query().
		Where(subscription.WorkspaceID(workspaceID), subscription.StripeSubscriptionIDNotNil()).
		Order(ent.Desc(subscription.FieldCreateTime)).
		First(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	return row, err
}

// writeStatusThrough reads a workspace's billing status from the database
// and stores it in the status cache, unless Redis holds a newer one; it
// reports whether Redis answered.
func (s *Service) writeStatusThrough(ctx context.Context, workspaceID uuid.UUID) (*BillingStatus, bool, error) {
	st, err := s.loadStatus(ctx, workspaceID)
	if err != nil {
		return nil, false, err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, false, err
	}
	return st, s.status.Store(ctx, workspaceID.String(), st.Version, b), nil
}

// refreshStatus writes a workspace's new billing status through to the
// cache after a committed change.
func (s *Service) refreshStatus(ctx context.Context, workspaceID uuid.UUID) {
	if _, _, err := s.writeStatusThrough(ctx, workspaceID); err != nil {
		s.log.ErrorContext(ctx, "status cache: reload after change failed", "workspace_id", workspaceID, "err", err)
		return
	}
	// After the snapshot is in Redis: a replica that refilled its near
	// cache from the old snapshot in between drops it now.
	s.invalidate(ctx, cache.WorkspaceGroup(workspaceID.String()))
}

// SubscriptionInput asks for a new subscription.
type SubscriptionInput struct {
	WorkspaceID uuid.UUID
	LookupKey   string
	Quantity    int64
	// TrialPeriodDays is nil for no trial, else 1..730.
	TrialPeriodDays *int64
	// IdempotencyKey is optional: with it, a retry returns the same
	// subscription, and the key with other details is refused; without
	// it, identical requests within ten minutes share one subscription.
	IdempotencyKey string
	// PromotionCode is an optional customer-facing code, checked with
	// Stripe before use.
	PromotionCode string
}

// SubscriptionResult is a subscription and, when a first payment must be
// confirmed, the client secret Stripe.js needs for it.
type SubscriptionResult struct {
	Subscription *SubscriptionView
	// ClientSecret confirms the first invoice's payment (or saves a card
	// for after a trial); "" when nothing needs confirming.
	ClientSecret string
}

// CreateSubscription subscribes a workspace to a recurring plan (owners
// and admins). It refuses a second live subscription with BAD_USER_INPUT.
// The subscription starts `incomplete` until its first payment is
// confirmed (payment_behavior=default_incomplete); access follows the
// state webhooks confirm.
func (s *Service) CreateSubscription(ctx context.Context, in SubscriptionInput) (*SubscriptionResult, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	if err := ValidateLookupKey("lookupKey", in.LookupKey); err != nil {
		return nil, err
	}
	if in.Quantity < 1 || in.Quantity > MaxCheckoutQuantity {
		return nil, InvalidInput("quantity", fmt.Sprintf("Quantity must be between 1 and %d.", MaxCheckoutQuantity))
	}
	trialDays := int64(0)
	if in.TrialPeriodDays != nil {
		trialDays = *in.TrialPeriodDays
	}
	if in.TrialPeriodDays != nil && (trialDays < 1 || trialDays > MaxTrialDays) {
		return nil, InvalidInput("trialPeriodDays", fmt.Sprintf("Trial must be between 1 and %d days.", MaxTrialDays))
	}
	if in.IdempotencyKey != "" && !validIdempotencyKey(in.IdempotencyKey) {
		return nil, InvalidInput("idempotencyKey", "Idempotency key must be 1 to 255 printable characters without spaces.")
	}
	if _, _, err := s.requireRole(ctx, in.WorkspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
		return nil, err
	}
	trial := ""
	if in.TrialPeriodDays != nil {
		trial = fmt.Sprint(trialDays)
	}
	bound := requestParams{"lookupKey": in.LookupKey, "quantity": fmt.Sprint(in.Quantity), "trialPeriodDays": trial,
		"promotionCode": strings.ToUpper(strings.TrimSpace(in.PromotionCode))}
	// The client's key names the request alone, so that the claim finds
	// it with other details and refuses them. Without one, equal requests
	// within ten minutes share a key.
	reqKey := idempotencyKey("sub", in.WorkspaceID.String(), v.UserID, in.IdempotencyKey)
	if in.IdempotencyKey == "" {
		reqKey = idempotencyKey("sub", in.WorkspaceID.String(), v.UserID, bound.fingerprint(),
			"t"+fmt.Sprint(time.Now().Unix()/int64(checkoutBucket.Seconds())))
	}
	// Refuse early, before any Stripe call; the claim repeats the check
	// under a lock.
	if live, err := hasLiveSubscription(ctx, s.db, in.WorkspaceID, reqKey); err != nil {
		return nil, err
	} else if live {
		return nil, errSecondSubscription
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
	customerID, err := s.EnsureCustomer(ctx, in.WorkspaceID)
	if err != nil {
		return nil, err
	}
	planName := planNameOf(plan)
	meta, err := stripemeta.Subscription(in.WorkspaceID, planName)
	if err != nil {
		return nil, fmt.Errorf("subscription metadata: %w", err)
	}
	// An open subscription Checkout would subscribe the workspace a second
	// time when paid: it is expired now that this request is known good.
	repeat, err := s.db.Subscription.Query().Where(subscription.RequestKey(reqKey)).Exist(ctx)
	if err != nil {
		return nil, err
	}
	if !repeat {
		if err := s.expireOtherSubscriptionCheckouts(ctx, in.WorkspaceID, reqKey); err != nil {
			return nil, err
		}
	}
	row, mine, err := claimRequest(ctx, s.subscriptionClaim(reqKey, bound, in.WorkspaceID, plan, planName, in.Quantity, v.UserID))
	if err != nil {
		return nil, err
	}
	if !mine {
		// The fresh client secret is Stripe's: the repeat spends the
		// budget.
		if err := spendWorkspaceBudget(ctx, in.WorkspaceID); err != nil {
			return nil, err
		}
		return s.existingSubscription(ctx, row)
	}

	params := &stripe.SubscriptionParams{
		Customer:        stripe.String(customerID),
		Items:           []*stripe.SubscriptionItemsParams{{Price: stripe.String(plan.PriceID), Quantity: stripe.Int64(in.Quantity)}},
		Metadata:        meta,
		PaymentBehavior: stripe.String("default_incomplete"),
		PaymentSettings: &stripe.SubscriptionPaymentSettingsParams{SaveDefaultPaymentMethod: stripe.String("on_subscription")},
	}
	if trialDays > 0 {
		params.TrialPeriodDays = stripe.Int64(trialDays)
	}
	if promoID != "" {
		params.PromotionCode = stripe.String(promoID)
	}
	params.AddExpand("discount.promotion_code")
	params.AddExpand("latest_invoice.payment_intent")
	params.AddExpand("pending_setup_intent")
	params.Context = ctx
	params.SetIdempotencyKey(reqKey)
	sub, err := createForWorkspace(ctx, s, in.WorkspaceID, "subscription.create", s.db.Subscription.DeleteOneID(row.ID).Exec,
		func() (*stripe.Subscription, error) { return s.stripe.Subscriptions.New(params) })
	if err != nil {
		return nil, err
	}
	view, err := s.applySubscription(ctx, in.WorkspaceID, row.ID, sub, nil)
	if err != nil {
		return nil, err
	}
	return &SubscriptionResult{Subscription: view, ClientSecret: clientSecretOf(sub)}, nil
}

// errSecondSubscription refuses a subscription for a workspace that has one.
var errSecondSubscription = InvalidInput("workspaceId", "This workspace already has a subscription. Change its plan instead.")

// hasLiveSubscription reports whether the workspace has a live
// subscription other than the one claimed with reqKey. A claim still
// `creating` after staleClaim belongs to a request that died (a crash
// mid-call): it does not count, or it would refuse the workspace's every
// later subscription; if Stripe did make that subscription, its webhook
// records it as a row of its own.
func hasLiveSubscription(ctx context.Context, db *ent.Client, ws uuid.UUID, reqKey string) (bool, error) {
	return db.Subscription.Query().
		Where(subscription.WorkspaceID(ws), subscription.StatusIn(liveStatuses...),
			subscription.Or(subscription.RequestKeyIsNil(), subscription.RequestKeyNEQ(reqKey)),
			subscription.Or(subscription.StatusNEQ("creating"), subscription.UpdateTimeGT(time.Now().Add(-staleClaim)))).
		Exist(ctx)
}

// clientSecretOf returns the secret a client confirms a new subscription
// with: the first invoice's PaymentIntent, or the SetupIntent that saves a
// card for after a trial.
func clientSecretOf(sub *stripe.Subscription) string {
	if sub.LatestInvoice != nil && sub.LatestInvoice.PaymentIntent != nil &&
		sub.LatestInvoice.PaymentIntent.Status != stripe.PaymentIntentStatusSucceeded && sub.Status == stripe.SubscriptionStatusIncomplete {
		return sub.LatestInvoice.PaymentIntent.ClientSecret
	}
	if sub.PendingSetupIntent != nil {
		return sub.PendingSetupIntent.ClientSecret
	}
	return ""
}

// recurringPlan returns the plan of a lookup key, refusing unknown keys
// and one-time prices with BAD_USER_INPUT.
func (s *Service) recurringPlan(ctx context.Context, lookupKey string) (*Plan, error) {
	plan, err := s.Price(ctx, lookupKey)
	if ErrorCode(err) == CodeNotFound {
		return nil, InvalidInput("lookupKey", "No plan has this lookup key.")
	}
	if err != nil {
		return nil, err
	}
	if plan.Interval == "" {
		return nil, InvalidInput("lookupKey", "This price is one-time; a subscription needs a recurring price.")
	}
	return plan, nil
}

func planNameOf(p *Plan) string {
	if p.Product.Plan != "" {
		return p.Product.Plan
	}
	return p.LookupKey
}

// subscriptionClaim returns the claim steps for a new subscription. The
// claim is inserted under a lock on the workspace row, after checking that
// no other live subscription exists, so that two different requests at
// once cannot both subscribe the workspace.
func (s *Service) subscriptionClaim(reqKey string, bound requestParams, ws uuid.UUID, plan *Plan, planName string, qty int64, userID string) claimOps[*ent.Subscription] {
	id := claimID(reqKey, bound)
	return claimOps[*ent.Subscription]{
		insert: func(ctx context.Context) (*ent.Subscription, error) {
			var row *ent.Subscription
			err := WithTx(ctx, s.db, func(tx *ent.Tx) error {
				if err := s.lockWorkspaceBilling(ctx, tx, ws); err != nil {
					return err
				}
				if err := refuseSecondSubscription(ctx, tx.Client(), ws, reqKey); err != nil {
					return err
				}
				var err error
				row, err = tx.Subscription.Create().SetID(id).
					SetWorkspaceID(ws).SetRequestKey(reqKey).SetPlan(planName).SetLookupKey(plan.LookupKey).
					SetPriceID(plan.PriceID).SetQuantity(qty).SetFeatures(plan.Product.Features).
					SetCriticalFeatures(plan.Product.CriticalFeatures).SetCreatedBy(userID).
					Save(ctx)
				return err
			})
			return row, err
		},
		find: func(ctx context.Context) (*ent.Subscription, error) {
			return s.db.Subscription.Query().Where(subscription.RequestKey(reqKey)).Only(ctx)
		},
		sameRequest: func(r *ent.Subscription) bool {
			// Older rows' request keys were made otherwise (with every
			// detail in them): no request finds one by its key now.
			return claimedWith(r.ID, id, func() bool { return false })
		},
		pending: func(r *ent.Subscription) (bool, time.Time) { return r.Status == "creating", r.UpdateTime },
		removeStale: func(ctx context.Context, r *ent.Subscription, touched time.Time) (bool, error) {
			n, err := s.db.Subscription.Delete().
				Where(subscription.ID(r.ID), subscription.Status("creating"), subscription.UpdateTime(touched)).
				Exec(ctx)
			return n == 1, err
		},
	}
}

// existingSubscription answers a repeated createSubscription: the same
// subscription, with a fresh client secret from Stripe.
func (s *Service) existingSubscription(ctx context.Context, row *ent.Subscription) (*SubscriptionResult, error) {
	if row.StripeSubscriptionID == nil {
		return nil, Errorf(CodeInternal, "%s", genericInternal)
	}
	params := &stripe.SubscriptionParams{}
	params.AddExpand("latest_invoice.payment_intent")
	params.AddExpand("pending_setup_intent")
	params.Context = ctx
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Get(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return nil, s.fromStripe(ctx, "subscription.retrieve", err)
	}
	return &SubscriptionResult{Subscription: viewOf(row), ClientSecret: clientSecretOf(sub)}, nil
}

// stripeEvent identifies the Stripe event a change comes from, for
// ordering: nil for a change read from a Stripe API answer.
type stripeEvent struct {
	ID      string
	Created time.Time
	// TieSeen marks an event whose planning found the last event applied
	// of the same second and settled it (by reading the subscription from
	// Stripe, which is newer than both).
	TieSeen bool
}

// errTieAfterPlanning fails an event that, once its transaction holds the
// workspace's lock, finds another event of the same second applied since
// it was planned (by another replica): which of the two is newer cannot be
// told from their timestamps, so the event is retried, and planning it
// again asks Stripe.
var errTieAfterPlanning = errors.New("another event of the same second was applied meanwhile; retried")

// applySubscription writes what a Stripe API answer says of a
// subscription onto its row, in its own transaction, and writes the new
// status through to the cache. Stripe has made the change by then, so it
// runs to the end even if the caller has gone: a new subscription's claim
// left `creating` would count as live and refuse the workspace's next one.
func (s *Service) applySubscription(ctx context.Context, workspaceID, rowID uuid.UUID, sub *stripe.Subscription, ev *stripeEvent) (*SubscriptionView, error) {
	ctx = context.WithoutCancel(ctx)
	plan, err := s.planOfSubscription(ctx, sub)
	if err != nil {
		// Recorded all the same, with the features it had: what Stripe
		// did must not be lost. The subscription's webhook event, which
		// is retried until its plan is read, sets them.
		s.log.WarnContext(ctx, "subscription recorded without its plan's features", "subscription", sub.ID, "err", err)
		plan = nil
	}
	var (
		view    *SubscriptionView
		changed bool
	)
	err = WithTx(ctx, s.db, func(tx *ent.Tx) error {
		var err error
		view, changed, err = s.applySubscriptionTx(ctx, tx, workspaceID, rowID, sub, ev, plan)
		return err
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.refreshStatus(ctx, workspaceID)
	}
	return view, nil
}

// planOfSubscription returns the catalog plan of the subscription's price
// (for its features), nil when it has no lookup key or one the catalog
// does not know, or the error of a lookup that failed (Stripe down): a
// subscription recorded without its plan would grant none of its features.
func (s *Service) planOfSubscription(ctx context.Context, sub *stripe.Subscription) (*Plan, error) {
	item := firstItem(sub)
	if item == nil || item.Price == nil || item.Price.LookupKey == "" {
		return nil, nil
	}
	plan, err := s.Price(ctx, item.Price.LookupKey)
	switch {
	case ErrorCode(err) == CodeNotFound, ErrorCode(err) == CodeBadUserInput:
		return nil, nil // unknown to the catalog, or a key it cannot hold (Dashboard prices)
	case errors.Is(err, errStripeNotConfigured):
		return nil, nil // no Stripe to ask: waiting would not help
	}
	return plan, err
}

// applySubscriptionTx writes what Stripe says of a subscription onto its
// row (rowID, or the row with its Stripe id, or a new row when neither
// exists, e.g. one created by Checkout) and bumps the workspace's billing
// version. With an event, an event older than the last one applied to the
// row changes nothing. It reports whether the row changed.
func (s *Service) applySubscriptionTx(ctx context.Context, tx *ent.Tx, workspaceID, rowID uuid.UUID, sub *stripe.Subscription, ev *stripeEvent, plan *Plan) (*SubscriptionView, bool, error) {
	if err := s.lockWorkspaceBilling(ctx, tx, workspaceID); err != nil {
		return nil, false, err
	}
	row, err := findSubscriptionRow(ctx, tx, rowID, sub.ID)
	if err != nil {
		return nil, false, err
	}
	if row != nil && row.WorkspaceID != workspaceID {
		return nil, false, fmt.Errorf("subscription %s belongs to another workspace", sub.ID)
	}
	if row != nil && ev != nil && row.LastEventAt != nil && ev.Created.Before(*row.LastEventAt) {
		return viewOf(row), false, nil // an older event: the row already knows better
	}
	if row != nil && ev != nil && !ev.TieSeen && row.LastEventAt != nil && ev.Created.Equal(*row.LastEventAt) && row.LastEventID != ev.ID {
		return nil, false, errTieAfterPlanning
	}
	item := firstItem(sub)
	if row == nil {
		create := tx.Subscription.Create().SetWorkspaceID(workspaceID).SetCreatedBy("stripe").
			SetPlan("").SetLookupKey("").SetPriceID("")
		fillSubscription(create.Mutation(), sub, item, plan, ev)
		row, err = create.Save(ctx)
	} else {
		upd := tx.Subscription.UpdateOne(row)
		fillSubscription(upd.Mutation(), sub, item, plan, ev)
		row, err = upd.Save(ctx)
	}
	if err != nil {
		return nil, false, err
	}
	// UpdateOne, though it reads the row back: the near cache's hook drops
	// only this workspace's entries for it, and all of them for an Update.
	if err := tx.Workspace.UpdateOneID(workspaceID).AddBillingVersion(1).Exec(ctx); err != nil {
		return nil, false, err
	}
	return viewOf(row), true, nil
}

// lockWorkspaceBilling locks the workspace row in tx (with row locks) for
// a change to its subscriptions, which all serialize on it; it fails when
// the workspace is out of the viewer's reach.
func (s *Service) lockWorkspaceBilling(ctx context.Context, tx *ent.Tx, ws uuid.UUID) error {
	q := tx.Workspace.Query().Where(workspace.ID(ws))
	if s.rowLocks() {
		q = q.ForUpdate(noKeyUpdate)
	}
	_, err := q.Only(ctx)
	return err
}

// noKeyUpdate makes ForUpdate lock a workspace FOR NO KEY UPDATE, the
// lock an UPDATE of its non-key columns takes, which is what the
// subscription changes of one workspace serialize on. FOR UPDATE would
// also wait for, and block, every transaction that inserts a row
// referencing the workspace (a payment, an invoice): their foreign keys
// take KEY SHARE locks on it. With several events applied in one
// transaction, that made webhook lanes deadlock.
func noKeyUpdate(o *entsql.LockOptions) { o.Strength = entsql.LockNoKeyUpdate }

// findSubscriptionRow returns the row by id, else by Stripe id, else nil.
// A claim (rowID, not yet linked to Stripe) whose subscription's webhook
// was applied while Stripe's answer was on its way finds the row the
// webhook made: that row gives way to the claim, which holds the request
// key a retry looks for, and leaves it the last event applied (time and
// id), so that older events still change nothing.
func findSubscriptionRow(ctx context.Context, tx *ent.Tx, rowID uuid.UUID, stripeID string) (*ent.Subscription, error) {
	if rowID == uuid.Nil {
		return nilIfNotFound(tx.Subscription.Query().Where(subscription.StripeSubscriptionID(stripeID)).Only(ctx))
	}
	row, err := nilIfNotFound(tx.Subscription.Get(ctx, rowID))
	if err != nil || row == nil || row.StripeSubscriptionID != nil {
		return row, err
	}
	webhooks, err := nilIfNotFound(tx.Subscription.Query().Where(subscription.StripeSubscriptionID(stripeID)).Only(ctx))
	if err != nil || webhooks == nil {
		return row, err
	}
	if webhooks.WorkspaceID != row.WorkspaceID {
		return nil, fmt.Errorf("subscription %s is recorded for another workspace", stripeID)
	}
	if err := tx.Subscription.DeleteOne(webhooks).Exec(ctx); err != nil {
		return nil, err
	}
	return tx.Subscription.UpdateOne(row).
		SetNillableLastEventAt(webhooks.LastEventAt).SetLastEventID(webhooks.LastEventID).Save(ctx)
}

// nilIfNotFound turns ent's not-found error into a nil row.
func nilIfNotFound[T any](row *T, err error) (*T, error) {
	if ent.IsNotFound(err) {
		return nil, nil
	}
	return row, err
}

func firstItem(sub *stripe.Subscription) *stripe.SubscriptionItem {
	if sub.Items == nil || len(sub.Items.Data) == 0 {
		return nil
	}
	return sub.Items.Data[0]
}

// fillSubscription copies Stripe's view of a subscription onto m.
func fillSubscription(m *ent.SubscriptionMutation, sub *stripe.Subscription, item *stripe.SubscriptionItem, plan *Plan, ev *stripeEvent) {
	m.SetStripeSubscriptionID(sub.ID)
	m.SetStatus(string(sub.Status))
	m.SetCancelAtPeriodEnd(sub.CancelAtPeriodEnd)
	setTime(m.SetCurrentPeriodStart, m.ClearCurrentPeriodStart, sub.CurrentPeriodStart)
	setTime(m.SetCurrentPeriodEnd, m.ClearCurrentPeriodEnd, sub.CurrentPeriodEnd)
	setTime(m.SetCanceledAt, m.ClearCanceledAt, sub.CanceledAt)
	setTime(m.SetTrialEnd, m.ClearTrialEnd, sub.TrialEnd)
	if p := sub.Metadata["plan"]; p != "" {
		m.SetPlan(p)
	}
	if item != nil {
		m.SetStripeItemID(item.ID)
		if item.Quantity > 0 {
			m.SetQuantity(item.Quantity)
		}
		if item.Price != nil {
			m.SetPriceID(item.Price.ID)
			if item.Price.LookupKey != "" {
				m.SetLookupKey(item.Price.LookupKey)
			}
		}
	}
	if plan != nil {
		m.SetFeatures(plan.Product.Features)
		m.SetCriticalFeatures(plan.Product.CriticalFeatures)
		if sub.Metadata["plan"] == "" {
			m.SetPlan(planNameOf(plan))
		}
	}
	if ev != nil {
		m.SetLastEventAt(ev.Created)
		m.SetLastEventID(ev.ID)
	}
	// Each discount column is either set or cleared, never both: ent
	// would send both assignments in one UPDATE, which PostgreSQL refuses
	// (42601) and SQLite applies in order, losing the discount.
	var code string
	var coupon *stripe.Coupon
	if d := sub.Discount; d != nil {
		coupon = d.Coupon
		switch {
		case d.PromotionCode != nil && d.PromotionCode.Code != "":
			code = d.PromotionCode.Code
		case d.Coupon != nil:
			code = d.Coupon.ID
		}
	}
	if code != "" {
		m.SetDiscountCode(code)
	} else {
		m.ClearDiscountCode()
	}
	if coupon != nil {
		m.SetDiscountPercentOff(coupon.PercentOff)
		m.SetDiscountAmountOff(coupon.AmountOff)
	} else {
		m.ClearDiscountPercentOff()
		m.ClearDiscountAmountOff()
	}
}

// setTime sets a nillable time field from a Unix time, or clears it for 0.
func setTime(set func(time.Time), clear func(), unix int64) {
	if unix == 0 {
		clear()
		return
	}
	set(time.Unix(unix, 0).UTC())
}

// customer.subscription.* events (eventHandlers).

// subscriptionEvents handles customer.subscription.* events.
var subscriptionEvents = on("subscription", subscriptionRefs, (*Service).planSubscription)

// subscriptionRefs is what a subscription names: its recorded row and the
// workspace its metadata names, read ahead.
func subscriptionRefs(sub *stripe.Subscription) objectRefs {
	return objectRefs{id: sub.ID, recorded: "subscription", workspace: sub.Metadata[metaWorkspaceID]}
}

// planSubscription plans a customer.subscription.* event: what Stripe
// says of the subscription, written onto its row in the workspace its
// metadata or customer names (applySubscriptionTx), with its plan read
// first; the subscription itself is read from Stripe when the event ties
// with the last one applied (resolveSubscriptionTie).
func (s *Service) planSubscription(ctx context.Context, ahead *readAhead, ev *Event, sub *stripe.Subscription) (uuid.UUID, eventChange, error) {
	ws, err := s.workspaceFor(ctx, ahead, sub.Metadata, customerID(sub.Customer))
	if err != nil {
		return uuid.Nil, nil, err
	}
	row, err := s.recordedSubscription(ctx, ahead, ws, sub.ID)
	if err != nil {
		return uuid.Nil, nil, err
	}
	latest, tie, err := s.resolveSubscriptionTie(ctx, row, sub, ev.ID, ev.Created)
	if err != nil {
		return uuid.Nil, nil, err
	}
	plan, err := s.planOfSubscription(ctx, latest)
	if err != nil {
		return uuid.Nil, nil, err // retried: without its plan it would grant no features
	}
	return ws, func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		view, changed, err := s.applySubscriptionTx(ctx, tx, ws, uuid.Nil, latest, &stripeEvent{ID: ev.ID, Created: ev.Created, TieSeen: tie}, plan)
		if err != nil || !changed {
			return nil, false, err
		}
		return &BillingEvent{Subscription: view}, true, nil
	}, nil
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
