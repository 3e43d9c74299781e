package billing

import (
	"context"
	"fmt"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/billing/stripemeta"
	"billingapi/ent"
	"billingapi/ent/payment"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// PaymentInput asks for a one-time payment from a workspace.
type PaymentInput struct {
	WorkspaceID uuid.UUID
	// Amount is in the currency's smallest unit (cents; whole yen).
	Amount   int64
	Currency string
	// Purpose says what the payment is for (snake_case), e.g. credits_pack.
	Purpose string
	// IdempotencyKey is the client's key: a retry with the same key
	// returns the same payment and creates nothing new.
	IdempotencyKey string
	// PaymentMethodID, when set, confirms the payment at once with a
	// saved payment method; it may then need 3D Secure.
	PaymentMethodID string
}

// PaymentResult is what a client needs to finish a payment with Stripe.js.
type PaymentResult struct {
	Payment *ent.Payment
	// PaymentIntentID and Status are Stripe's, as of this answer.
	PaymentIntentID string
	Status          string
	// ClientSecret lets Stripe.js confirm the payment or run 3D Secure. It
	// is the only secret a client ever receives, and only its own.
	ClientSecret string
}

// RequiresAction reports whether the customer must authenticate (3D
// Secure) in the browser before the payment can go on.
func (r *PaymentResult) RequiresAction() bool {
	return r.Status == string(stripe.PaymentIntentStatusRequiresAction)
}

// maxIdempotencyKeyLen is the longest client idempotency key accepted.
const maxIdempotencyKeyLen = 255

// validIdempotencyKey reports whether a client key is 1..255 printable
// ASCII characters.
func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// CreatePaymentIntent creates a Stripe PaymentIntent for a workspace
// (owners and admins) and records it as a Payment. Input is validated
// before anything else; a retry with the same idempotency key (also ten at
// once) returns the same payment. It refuses with BAD_USER_INPUT,
// NOT_FOUND, FORBIDDEN, CARD_DECLINED, RATE_LIMITED or
// PAYMENT_PROVIDER_UNAVAILABLE. A payment needing 3D Secure is returned
// with RequiresAction true.
func (s *Service) CreatePaymentIntent(ctx context.Context, in PaymentInput) (*PaymentResult, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	currency, err := NormalizeCurrency("currency", in.Currency)
	if err != nil {
		return nil, err
	}
	if err := ValidatePaymentAmount("amount", in.Amount, currency); err != nil {
		return nil, err
	}
	purpose := strings.TrimSpace(in.Purpose)
	if len(purpose) > 64 || !planNamePattern.MatchString(purpose) {
		return nil, InvalidInput("purpose", "Purpose must be a snake_case name of at most 64 characters, such as credits_pack.")
	}
	if !validIdempotencyKey(in.IdempotencyKey) {
		return nil, InvalidInput("idempotencyKey", "Idempotency key must be 1 to 255 printable characters without spaces.")
	}
	if in.PaymentMethodID != "" && (!strings.HasPrefix(in.PaymentMethodID, "pm_") || len(in.PaymentMethodID) > 255) {
		return nil, InvalidInput("paymentMethodId", "Payment method must be a Stripe payment method id (pm_...).")
	}
	if _, _, err := s.requireRole(ctx, in.WorkspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
		return nil, err
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	customerID, err := s.EnsureCustomer(ctx, in.WorkspaceID)
	if err != nil {
		return nil, err
	}
	meta, err := stripemeta.PaymentIntent(in.WorkspaceID, v.UserID, purpose)
	if err != nil {
		return nil, fmt.Errorf("payment metadata: %w", err)
	}

	// The key names the request, not its details: the same key with other
	// details is refused by the claim, never taken for a new payment.
	reqKey := idempotencyKey("pi", in.WorkspaceID.String(), v.UserID, in.IdempotencyKey)
	bound := requestParams{"amount": fmt.Sprint(in.Amount), "currency": currency, "purpose": purpose, "paymentMethodId": in.PaymentMethodID}
	row, mine, err := claimRequest(ctx, s.paymentClaim(reqKey, bound, in.WorkspaceID, in.Amount, currency, purpose, v.UserID))
	if err != nil {
		return nil, err
	}
	if !mine {
		return s.existingPayment(ctx, row)
	}

	params := &stripe.PaymentIntentParams{
		Amount:   stripe.Int64(in.Amount),
		Currency: stripe.String(currency),
		Customer: stripe.String(customerID),
		Metadata: meta,
	}
	if in.PaymentMethodID != "" {
		params.PaymentMethod = stripe.String(in.PaymentMethodID)
		params.Confirm = stripe.Bool(true)
		params.ReturnURL = stripe.String(s.cfg.BaseURL + "/payment/complete")
	} else {
		params.AutomaticPaymentMethods = &stripe.PaymentIntentAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)}
	}
	params.Context = ctx
	params.SetIdempotencyKey(reqKey)
	pi, err := createForWorkspace(ctx, s, in.WorkspaceID, "payment_intent.create", s.db.Payment.DeleteOneID(row.ID).Exec,
		func() (*stripe.PaymentIntent, error) { return s.stripe.PaymentIntents.New(params) })
	if err != nil {
		return nil, err
	}
	// Stripe has the PaymentIntent now: it is recorded even if the
	// client has gone, or a retry with this key would find only the claim.
	row, err = s.recordPaymentIntent(context.WithoutCancel(ctx), row, pi)
	if err != nil {
		// The webhook for it carries workspace_id in its metadata and
		// records it all the same.
		return nil, fmt.Errorf("record payment intent %s: %w", pi.ID, err)
	}
	return &PaymentResult{Payment: row, PaymentIntentID: pi.ID, Status: string(pi.Status), ClientSecret: pi.ClientSecret}, nil
}

// recordPaymentIntent puts the PaymentIntent Stripe created for a claim
// onto the claim's row. Its webhook may have been applied first, while
// Stripe's answer was on its way, and recorded it on a row of its own: then
// that row gives way to the claim's (which holds the request key a retry
// looks for), and the claim's row takes the state the webhook gave it. A
// webhook that inserts its row between our read and our write makes the
// write fail on the unique index; the second attempt finds the row.
func (s *Service) recordPaymentIntent(ctx context.Context, claim *ent.Payment, pi *stripe.PaymentIntent) (*ent.Payment, error) {
	var row *ent.Payment
	record := func(tx *ent.Tx) error {
		upd := tx.Payment.UpdateOneID(claim.ID).SetStripePaymentIntentID(pi.ID)
		// Locked: a later event of the PaymentIntent applied meanwhile
		// must not be copied over stale.
		webhooks, err := s.lockedPayment(ctx, tx, pi.ID)
		switch {
		case ent.IsNotFound(err):
			upd.SetStatus(payment.Status(pi.Status))
		case err != nil:
			return err
		case webhooks.WorkspaceID != claim.WorkspaceID:
			return fmt.Errorf("payment intent %s is recorded for another workspace", pi.ID)
		default:
			if err := tx.Payment.DeleteOne(webhooks).Exec(ctx); err != nil {
				return err
			}
			status := webhooks.Status
			if isPaid(payment.Status(pi.Status)) && !isPaid(status) {
				status = payment.Status(pi.Status) // Stripe's answer is further along
			}
			upd.SetStatus(status).SetAmountRefunded(webhooks.AmountRefunded).
				SetLastErrorCode(webhooks.LastErrorCode).SetNillableLastEventAt(webhooks.LastEventAt)
		}
		row, err = upd.Save(ctx)
		return err
	}
	err := WithTx(ctx, s.db, record)
	if ent.IsConstraintError(err) {
		err = WithTx(ctx, s.db, record)
	}
	return row, err
}

// paymentClaim returns the claim steps for a payment request.
func (s *Service) paymentClaim(reqKey string, bound requestParams, ws uuid.UUID, amount int64, currency, purpose, userID string) claimOps[*ent.Payment] {
	id := claimID(reqKey, bound)
	return claimOps[*ent.Payment]{
		insert: func(ctx context.Context) (*ent.Payment, error) {
			return s.db.Payment.Create().SetID(id).
				SetWorkspaceID(ws).SetRequestKey(reqKey).SetAmount(amount).SetCurrency(currency).
				SetPurpose(purpose).SetCreatedBy(userID).SetStatus(payment.StatusCreating).
				Save(ctx)
		},
		find: func(ctx context.Context) (*ent.Payment, error) {
			return s.db.Payment.Query().Where(payment.RequestKey(reqKey)).Only(ctx)
		},
		sameRequest: func(p *ent.Payment) bool {
			// An older row does not say which payment method it was
			// confirmed with.
			return claimedWith(p.ID, id, func() bool { return p.Amount == amount && p.Currency == currency && p.Purpose == purpose })
		},
		pending: func(p *ent.Payment) (bool, time.Time) { return p.Status == payment.StatusCreating, p.UpdateTime },
		removeStale: func(ctx context.Context, p *ent.Payment, touched time.Time) (bool, error) {
			n, err := s.db.Payment.Delete().
				Where(payment.ID(p.ID), payment.StatusEQ(payment.StatusCreating), payment.UpdateTime(touched)).
				Exec(ctx)
			return n == 1, err
		},
	}
}

// existingPayment answers a repeated request: the same payment, with a
// fresh client secret and status from Stripe.
func (s *Service) existingPayment(ctx context.Context, row *ent.Payment) (*PaymentResult, error) {
	if row.StripePaymentIntentID == nil {
		return nil, Errorf(CodeInternal, "%s", genericInternal)
	}
	// The fresh client secret is Stripe's: the repeat spends the budget.
	if err := spendWorkspaceBudget(ctx, row.WorkspaceID); err != nil {
		return nil, err
	}
	params := &stripe.PaymentIntentParams{}
	params.Context = ctx
	pi, err := retryRateLimited(ctx, func() (*stripe.PaymentIntent, error) {
		return s.stripe.PaymentIntents.Get(*row.StripePaymentIntentID, params)
	})
	if err != nil {
		return nil, s.fromStripe(ctx, "payment_intent.retrieve", err)
	}
	return &PaymentResult{Payment: row, PaymentIntentID: pi.ID, Status: string(pi.Status), ClientSecret: pi.ClientSecret}, nil
}

// genericInternal is the message of an INTERNAL error.
const genericInternal = "Something went wrong on our side. Please try again."

// payment_intent.* events (eventHandlers).

// paymentIntentEvents handles payment_intent.* events.
var paymentIntentEvents = on("payment intent", paymentIntentRefs, (*Service).planPaymentIntent)

// paymentIntentRefs is what a PaymentIntent names: its Payment is read
// ahead, with the workspace its metadata names.
func paymentIntentRefs(pi *stripe.PaymentIntent) objectRefs {
	return objectRefs{id: pi.ID, recorded: "payment", workspace: pi.Metadata[metaWorkspaceID]}
}

// planPaymentIntent plans a payment_intent.* event: the PaymentIntent's
// new status on its Payment (paymentIntentChange), in the workspace its
// metadata or customer names, unless its payment is recorded for another.
func (s *Service) planPaymentIntent(ctx context.Context, ahead *readAhead, ev *Event, pi *stripe.PaymentIntent) (uuid.UUID, eventChange, error) {
	ws, err := s.workspaceFor(ctx, ahead, pi.Metadata, customerID(pi.Customer))
	if err != nil {
		return uuid.Nil, nil, err
	}
	if err := s.refuseForeignObject(ctx, ahead, ws, "payment", pi.ID); err != nil {
		return uuid.Nil, nil, err
	}
	return ws, s.paymentIntentChange(ws, pi, ev.Type, ev.Created, ahead.absent("payment", pi.ID)), nil
}

// paymentStatusFor maps a PaymentIntent event to the Payment status it sets.
func paymentStatusFor(eventType string, pi *stripe.PaymentIntent) payment.Status {
	switch eventType {
	case "payment_intent.succeeded":
		return payment.StatusSucceeded
	case "payment_intent.payment_failed":
		return payment.StatusFailed
	}
	if err := payment.StatusValidator(payment.Status(pi.Status)); err == nil && pi.Status != "" {
		return payment.Status(pi.Status)
	}
	return ""
}

// paymentStage orders a payment's statuses by when they come in its life,
// for events of the same second.
func paymentStage(status payment.Status) int {
	switch status {
	case payment.StatusCreating, payment.StatusRequiresPaymentMethod, payment.StatusRequiresConfirmation:
		return 0
	case payment.StatusRequiresAction:
		return 1
	case payment.StatusProcessing, payment.StatusRequiresCapture:
		return 2
	default: // succeeded, failed, canceled and the refund statuses
		return 3
	}
}

// paymentIntentChange records a PaymentIntent's new status on its Payment
// (creating the row for a PaymentIntent made outside this API). A
// succeeded payment never moves back; an older event changes nothing.
//
// absent says that planning found no payment recorded for the
// PaymentIntent: the change then inserts the row straight away, one
// statement rather than a locking read and an insert, unless it has been
// recorded since, in which case it is changed as any recorded payment.
func (s *Service) paymentIntentChange(ws uuid.UUID, pi *stripe.PaymentIntent, eventType string, created time.Time, absent bool) eventChange {
	return func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		status := paymentStatusFor(eventType, pi)
		if status == "" {
			return nil, false, nil
		}
		errorCode := ""
		if pi.LastPaymentError != nil {
			errorCode = string(pi.LastPaymentError.DeclineCode)
			if errorCode == "" {
				errorCode = string(pi.LastPaymentError.Code)
			}
		}
		if absent {
			row, err := s.insertPayment(ctx, tx, ws, pi, status, errorCode, created)
			if !isNoRowsFromDoNothing(err) {
				return paymentChanged(row, err)
			}
		}
		row, err := s.lockedPayment(ctx, tx, pi.ID)
		switch {
		case ent.IsNotFound(err):
			// Another transaction may insert it first: this insert then
			// waits for it and does nothing, and the event is retried.
			row, err := s.insertPayment(ctx, tx, ws, pi, status, errorCode, created)
			if isNoRowsFromDoNothing(err) {
				err = fmt.Errorf("payment intent %s was recorded by a concurrent transaction", pi.ID)
			}
			return paymentChanged(row, err)
		case err != nil:
			return nil, false, err
		}
		if row.WorkspaceID != ws {
			return nil, false, fmt.Errorf("payment intent %s belongs to another workspace", pi.ID)
		}
		// Stripe's timestamps are whole seconds and deliveries come in any
		// order: of two events of the same second, the later stage of the
		// payment's life wins (created, then requires_action, then an
		// outcome), so a late payment_intent.created cannot undo
		// requires_action. (A retry within the second of a failure is the
		// one case this misorders; the retry's next event sets it right.)
		if last := row.LastEventAt; last != nil && (created.Before(*last) ||
			created.Equal(*last) && paymentStage(status) < paymentStage(row.Status)) {
			return nil, false, nil
		}
		// A paid payment never moves back; its refund statuses are the
		// refund events' to set. The first succeeded event of a payment
		// Stripe's API answer already showed as paid is still the webhook
		// confirmation that subscribers are told of.
		if isPaid(row.Status) {
			if status != payment.StatusSucceeded || row.LastEventAt != nil {
				return nil, false, nil
			}
			row, err = tx.Payment.UpdateOne(row).SetLastEventAt(created).Save(ctx)
			if err != nil {
				return nil, false, err
			}
			return &BillingEvent{Payment: row}, false, nil
		}
		upd := tx.Payment.UpdateOne(row).SetStatus(status).SetLastEventAt(created)
		if errorCode != "" {
			upd.SetLastErrorCode(errorCode)
		}
		row, err = upd.Save(ctx)
		if err != nil {
			return nil, false, err
		}
		return &BillingEvent{Payment: row}, false, nil
	}
}

// insertPayment records a PaymentIntent made outside this API (or whose
// webhook came first) unless a payment is recorded for it already: then
// it inserts nothing and returns sql.ErrNoRows (isNoRowsFromDoNothing).
func (s *Service) insertPayment(ctx context.Context, tx *ent.Tx, ws uuid.UUID, pi *stripe.PaymentIntent, status payment.Status, errorCode string, created time.Time) (*ent.Payment, error) {
	purpose := pi.Metadata[metaPurpose]
	if purpose == "" {
		purpose = "external"
	}
	createdBy := pi.Metadata[metaUserID]
	if createdBy == "" {
		createdBy = "stripe"
	}
	c := tx.Payment.Create().SetWorkspaceID(ws).SetStripePaymentIntentID(pi.ID).
		SetAmount(pi.Amount).SetCurrency(strings.ToLower(string(pi.Currency))).SetPurpose(purpose).
		SetCreatedBy(createdBy).SetStatus(status).SetLastEventAt(created).SetLastErrorCode(errorCode)
	c.OnConflictColumns(payment.FieldStripePaymentIntentID).DoNothing()
	return c.Save(ctx)
}

// paymentChanged is a payment change's result: the payment to publish.
func paymentChanged(row *ent.Payment, err error) (*BillingEvent, bool, error) {
	if err != nil {
		return nil, false, err
	}
	return &BillingEvent{Payment: row}, false, nil
}

// lockedPayment reads the payment of a PaymentIntent in tx, locked (with
// row locks), so that another transaction recording the same PaymentIntent
// (an event on another replica, or our own create call's answer) waits
// rather than deciding from a stale row and overwriting it.
func (s *Service) lockedPayment(ctx context.Context, tx *ent.Tx, paymentIntentID string) (*ent.Payment, error) {
	q := tx.Payment.Query().Where(payment.StripePaymentIntentID(paymentIntentID))
	if s.rowLocks() {
		q = q.ForUpdate()
	}
	return q.Only(ctx)
}
