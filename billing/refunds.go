package billing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"billingapi/billing/stripemeta"
	"billingapi/ent"
	"billingapi/ent/payment"
	"billingapi/ent/privacy"
	"billingapi/ent/refund"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// RefundInput asks to give money back on a payment.
type RefundInput struct {
	PaymentID uuid.UUID
	// Amount is in the smallest currency unit; nil refunds everything
	// still refundable.
	Amount *int64
	// Reason is requested_by_customer, duplicate or fraudulent.
	Reason       string
	ReasonDetail string
	// IdempotencyKey makes a retried request return the same refund.
	IdempotencyKey string
}

// activeRefundStatuses are refunds that hold money: pending or done.
var activeRefundStatuses = []refund.Status{refund.StatusCreating, refund.StatusPending, refund.StatusRequiresAction, refund.StatusSucceeded}

// paidStatuses are the payment statuses after the money arrived.
var paidStatuses = []payment.Status{payment.StatusSucceeded, payment.StatusRefundPending, payment.StatusPartiallyRefunded, payment.StatusRefunded}

func isPaid(s payment.Status) bool {
	for _, p := range paidStatuses {
		if s == p {
			return true
		}
	}
	return false
}

// RefundAmounts are a payment's refund figures.
type RefundAmounts struct {
	// Refunded is what Stripe confirmed as refunded (charge.refunded), or
	// what our succeeded refunds add up to, whichever is larger.
	Refunded int64
	// Refundable is what may still be refunded: the amount paid less every
	// refund that is pending or done.
	Refundable int64
}

// RefundAmountsOf returns a payment's refunded and refundable amounts. A
// payment loaded with its refunds edge (a page of payments loads them all
// in one query) is answered from it; any other reads its refunds.
func (s *Service) RefundAmountsOf(ctx context.Context, p *ent.Payment) (RefundAmounts, error) {
	if loaded, err := p.Edges.RefundsOrErr(); err == nil {
		return amountsFrom(p, loaded), nil
	}
	return refundAmounts(ctx, s.db, p)
}

func refundAmounts(ctx context.Context, db *ent.Client, p *ent.Payment) (RefundAmounts, error) {
	refunds, err := db.Refund.Query().Where(refund.PaymentID(p.ID), refund.StatusIn(activeRefundStatuses...)).All(ctx)
	if err != nil {
		return RefundAmounts{}, err
	}
	return amountsFrom(p, refunds), nil
}

// amountsFrom computes a payment's amounts from its refunds; refunds that
// failed or were canceled hold nothing.
func amountsFrom(p *ent.Payment, refunds []*ent.Refund) RefundAmounts {
	var held, succeeded int64
	for _, r := range refunds {
		if !slices.Contains(activeRefundStatuses, r.Status) {
			continue
		}
		held += r.Amount
		if r.Status == refund.StatusSucceeded {
			succeeded += r.Amount
		}
	}
	refunded := max(p.AmountRefunded, succeeded)
	if !isPaid(p.Status) {
		return RefundAmounts{Refunded: refunded}
	}
	return RefundAmounts{Refunded: refunded, Refundable: max(p.Amount-max(held, p.AmountRefunded), 0)}
}

// RefundPayment refunds a payment, in full (no amount) or in part
// (platform admins). Refunds on one payment are serialized by a lock on
// its row, so that however many arrive at once they never add up to more
// than was paid; a retry with the same idempotency key returns the same
// refund. The payment shows `refunded` only after charge.refunded confirms
// it.
func (s *Service) RefundPayment(ctx context.Context, in RefundInput) (*ent.Refund, error) {
	v, err := requireAdmin(ctx)
	if err != nil {
		return nil, err
	}
	reason := strings.ToLower(in.Reason)
	if refund.ReasonValidator(refund.Reason(reason)) != nil {
		return nil, InvalidInput("reason", "Reason must be REQUESTED_BY_CUSTOMER, DUPLICATE or FRAUDULENT.")
	}
	detail := strings.TrimSpace(in.ReasonDetail)
	// The refunds table holds 500 bytes (ent's MaxLen counts bytes), which
	// is also never more than Stripe's 500 characters of metadata.
	if len(detail) > 500 {
		return nil, InvalidInput("reasonDetail", "Reason detail must be at most 500 characters, and at most 500 bytes (fewer characters with accents or non-Latin letters).")
	}
	if !validIdempotencyKey(in.IdempotencyKey) {
		return nil, InvalidInput("idempotencyKey", "Idempotency key must be 1 to 255 printable characters without spaces.")
	}
	if in.Amount != nil && *in.Amount <= 0 {
		return nil, InvalidInput("amount", "Refund amount must be a positive whole number in the currency's smallest unit.")
	}
	meta, err := stripemeta.Refund(v.UserID, detail)
	if err != nil {
		return nil, InvalidInput("reasonDetail", "Reason detail must not contain secrets, card numbers or personal data.")
	}
	p, err := s.db.Payment.Get(ctx, in.PaymentID)
	if ent.IsNotFound(err) {
		return nil, notFound("payment")
	}
	if err != nil {
		return nil, err
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	// The refund is written as the system of the payment's workspace: the
	// admin is not a member of it, and tenant rows are created only within
	// a workspace's scope.
	sys := systemCtx(ctx, p.WorkspaceID)
	// The key names the request, not its details: the same key with other
	// details is refused by the claim, never taken for a second refund.
	// The amount is bound as asked: a refund of what is left (no amount)
	// is another request than one of a given amount, even an equal one.
	reqKey := idempotencyKey("re", p.ID.String(), v.UserID, in.IdempotencyKey)
	amount := ""
	if in.Amount != nil {
		amount = fmt.Sprint(*in.Amount)
	}
	bound := requestParams{"amount": amount, "reason": reason, "reasonDetail": detail}
	row, mine, err := claimRequest(sys, s.refundClaim(reqKey, bound, p.ID, in.Amount, refund.Reason(reason), detail, v.UserID))
	if err != nil {
		return nil, err
	}
	if !mine {
		return row, nil
	}

	params := &stripe.RefundParams{
		PaymentIntent: p.StripePaymentIntentID,
		Amount:        stripe.Int64(row.Amount),
		Reason:        stripe.String(reason),
		Metadata:      meta,
	}
	params.Context = ctx
	params.SetIdempotencyKey(reqKey)
	// Releasing the claim after a failure restores the refundable amount.
	release := func(context.Context) error { return s.db.Refund.DeleteOneID(row.ID).Exec(sys) }
	re, err := createForClaim(ctx, s, "refund.create", release,
		func() (*stripe.Refund, error) { return s.stripe.Refunds.New(params) })
	if err != nil {
		return nil, err
	}
	status := refund.Status(re.Status)
	if refund.StatusValidator(status) != nil || status == refund.StatusCreating {
		status = refund.StatusPending
	}
	// Stripe has the refund now: it is recorded even if the client has gone.
	rec := context.WithoutCancel(sys)
	err = WithTx(rec, s.db, func(tx *ent.Tx) error {
		if err := tx.Refund.UpdateOne(row).SetStripeRefundID(re.ID).SetStatus(status).Exec(rec); err != nil {
			return err
		}
		return s.recomputePaymentStatus(rec, tx, p.ID)
	})
	if err != nil {
		return nil, fmt.Errorf("record refund %s: %w", re.ID, err)
	}
	return s.db.Refund.Get(rec, row.ID)
}

// refundClaim returns the claim steps of a refund: the row is inserted
// under a lock on the payment, after checking the amount against what is
// still refundable (unless the key has its row already: a repeat goes on
// to find it, also once the payment is refunded in full).
func (s *Service) refundClaim(reqKey string, bound requestParams, paymentID uuid.UUID, amount *int64, reason refund.Reason, detail, userID string) claimOps[*ent.Refund] {
	id := claimID(reqKey, bound)
	return claimOps[*ent.Refund]{
		insert: func(ctx context.Context) (*ent.Refund, error) {
			var row *ent.Refund
			err := WithTx(ctx, s.db, func(tx *ent.Tx) error {
				q := tx.Payment.Query().Where(payment.ID(paymentID))
				if s.rowLocks() {
					q = q.ForUpdate()
				}
				p, err := q.Only(ctx)
				if err != nil {
					return err
				}
				if repeat, err := tx.Refund.Query().Where(refund.RequestKey(reqKey)).Exist(ctx); err != nil || repeat {
					return cmp.Or(err, errKeyTaken)
				}
				if !isPaid(p.Status) || p.StripePaymentIntentID == nil {
					return InvalidInput("paymentId", "Only a payment that succeeded can be refunded.")
				}
				amounts, err := refundAmounts(ctx, tx.Client(), p)
				if err != nil {
					return err
				}
				want := amounts.Refundable
				if amount != nil {
					want = *amount
				}
				switch {
				case amounts.Refundable == 0:
					return InvalidInput("amount", "This payment has been refunded in full.")
				case want > amounts.Refundable:
					return InvalidInput("amount", "Refund amount is more than the "+FormatAmount(amounts.Refundable, p.Currency)+" still refundable.")
				}
				row, err = tx.Refund.Create().SetID(id).
					SetWorkspaceID(p.WorkspaceID).SetPaymentID(p.ID).SetRequestKey(reqKey).
					SetAmount(want).SetCurrency(p.Currency).SetReason(reason).SetReasonDetail(detail).
					SetRefundedBy(userID).SetStatus(refund.StatusCreating).
					Save(ctx)
				return err
			})
			return row, err
		},
		find: func(ctx context.Context) (*ent.Refund, error) {
			return s.db.Refund.Query().Where(refund.RequestKey(reqKey)).Only(ctx)
		},
		sameRequest: func(r *ent.Refund) bool {
			// An older row does not say whether its amount was asked for
			// or was what was left.
			return claimedWith(r.ID, id, func() bool {
				return (amount == nil || *amount == r.Amount) && r.Reason == reason && r.ReasonDetail == detail
			})
		},
		pending: func(r *ent.Refund) (bool, time.Time) { return r.Status == refund.StatusCreating, r.UpdateTime },
		removeStale: func(ctx context.Context, r *ent.Refund, touched time.Time) (bool, error) {
			n, err := s.db.Refund.Delete().
				Where(refund.ID(r.ID), refund.StatusEQ(refund.StatusCreating), refund.UpdateTime(touched)).
				Exec(ctx)
			return n == 1, err
		},
	}
}

// recomputePaymentStatus sets a paid payment's status from its refunds:
// refunded once Stripe's charge.refunded confirmed the whole amount;
// refund_pending while a refund awaits Stripe, or while refunds add up to
// the whole amount that the charge has not confirmed yet;
// partially_refunded when part of the amount came back; succeeded
// otherwise.
func (s *Service) recomputePaymentStatus(ctx context.Context, tx *ent.Tx, paymentID uuid.UUID) error {
	p, err := tx.Payment.Get(ctx, paymentID)
	if err != nil || !isPaid(p.Status) {
		return err
	}
	amounts, err := refundAmounts(ctx, tx.Client(), p)
	if err != nil {
		return err
	}
	pending, err := tx.Refund.Query().
		Where(refund.PaymentID(p.ID), refund.StatusIn(refund.StatusCreating, refund.StatusPending, refund.StatusRequiresAction)).
		Exist(ctx)
	if err != nil {
		return err
	}
	status := payment.StatusSucceeded
	switch {
	case p.AmountRefunded >= p.Amount:
		status = payment.StatusRefunded
	case pending || amounts.Refunded >= p.Amount:
		status = payment.StatusRefundPending
	case amounts.Refunded > 0:
		status = payment.StatusPartiallyRefunded
	}
	if status == p.Status {
		return nil
	}
	return tx.Payment.UpdateOne(p).SetStatus(status).Exec(ctx)
}

// charge.refunded, refund.* and charge.refund.updated events
// (eventHandlers).

// chargeRefundedEvents handles charge.refunded events, refundEvents
// refund.created, refund.updated and charge.refund.updated.
var (
	chargeRefundedEvents = on("charge", chargeRefs, (*Service).planChargeRefunded)
	refundEvents         = on("refund", refundRefs, (*Service).planRefund)
)

// chargeRefs is what a charge names: its PaymentIntent (the worker's
// lane: its events change the same payment row).
func chargeRefs(ch *stripe.Charge) objectRefs {
	return objectRefs{id: ch.ID, paymentIntent: paymentIntentID(ch.PaymentIntent)}
}

// refundRefs is what a refund names: its PaymentIntent, as for a charge.
func refundRefs(re *stripe.Refund) objectRefs {
	return objectRefs{id: re.ID, paymentIntent: paymentIntentID(re.PaymentIntent)}
}

// planChargeRefunded plans a charge.refunded event: the amount refunded
// on the payment of the workspace the charge or its payment names
// (chargeRefundedChange).
func (s *Service) planChargeRefunded(ctx context.Context, ahead *readAhead, ev *Event, ch *stripe.Charge) (uuid.UUID, eventChange, error) {
	ws, err := s.workspaceForPayment(ctx, ahead, ch.Metadata, customerID(ch.Customer), ch.PaymentIntent)
	if err != nil {
		return uuid.Nil, nil, err
	}
	return ws, s.chargeRefundedChange(ch, ev.Created), nil
}

// planRefund plans a refund.created, refund.updated or
// charge.refund.updated event: the refund's status, in the workspace the
// refund or its payment names (refundUpdatedChange).
func (s *Service) planRefund(ctx context.Context, ahead *readAhead, ev *Event, re *stripe.Refund) (uuid.UUID, eventChange, error) {
	ws, err := s.workspaceForPayment(ctx, ahead, re.Metadata, "", re.PaymentIntent)
	if err != nil {
		return uuid.Nil, nil, err
	}
	return ws, s.refundUpdatedChange(ws, re, ev.Created), nil
}

// workspaceForPayment finds the workspace of a charge or refund: as
// workspaceFor, else through the Payment recorded for its PaymentIntent.
func (s *Service) workspaceForPayment(ctx context.Context, ahead *readAhead, meta map[string]string, customer string, pi *stripe.PaymentIntent) (uuid.UUID, error) {
	ws, err := s.workspaceFor(ctx, ahead, meta, customer)
	var sk errSkip
	if !errors.As(err, &sk) || pi == nil {
		return ws, err
	}
	// As for customers: a read outside one workspace's scope that returns
	// the workspace id alone.
	p, perr := s.db.Payment.Query().Where(payment.StripePaymentIntentID(pi.ID)).
		Only(privacy.DecisionContext(ctx, privacy.Allow))
	switch {
	case perr == nil:
		return p.WorkspaceID, nil
	case !ent.IsNotFound(perr):
		return uuid.Nil, perr
	}
	return uuid.Nil, err
}

// chargeRefundedChange records what a charge.refunded event confirms: the
// charge's amount_refunded on its payment.
func (s *Service) chargeRefundedChange(ch *stripe.Charge, created time.Time) eventChange {
	return func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		if ch.PaymentIntent == nil {
			return nil, false, nil
		}
		p, err := tx.Payment.Query().Where(payment.StripePaymentIntentID(ch.PaymentIntent.ID)).Only(ctx)
		if ent.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if ch.AmountRefunded > p.AmountRefunded {
			if err := tx.Payment.UpdateOne(p).SetAmountRefunded(min(ch.AmountRefunded, p.Amount)).Exec(ctx); err != nil {
				return nil, false, err
			}
		}
		if err := s.recomputePaymentStatus(ctx, tx, p.ID); err != nil {
			return nil, false, err
		}
		p, err = tx.Payment.Get(ctx, p.ID)
		if err != nil {
			return nil, false, err
		}
		return &BillingEvent{Payment: p}, false, nil
	}
}

// refundUpdatedChange records a refund's new status (refund.updated,
// charge.refund.updated, refund.created): a failed or canceled refund
// gives its amount back to the refundable. A refund made outside this API
// is recorded too.
func (s *Service) refundUpdatedChange(ws uuid.UUID, re *stripe.Refund, created time.Time) eventChange {
	return func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		status := refund.Status(re.Status)
		if refund.StatusValidator(status) != nil || status == refund.StatusCreating {
			return nil, false, nil
		}
		// Locked, so that concurrent events of the same refund apply one
		// after the other and the older one cannot overwrite the newer.
		q := tx.Refund.Query().Where(refund.StripeRefundID(re.ID))
		if s.rowLocks() {
			q = q.ForUpdate()
		}
		row, err := q.Only(ctx)
		if ent.IsNotFound(err) {
			row, err = s.adoptRefund(ctx, tx, ws, re)
		}
		if err != nil || row == nil {
			return nil, false, err
		}
		if row.LastEventAt != nil && created.Before(*row.LastEventAt) {
			return nil, false, nil
		}
		upd := tx.Refund.UpdateOne(row).SetStatus(status).SetLastEventAt(created)
		if re.FailureReason != "" {
			upd.SetFailureReason(string(re.FailureReason))
		}
		if row, err = upd.Save(ctx); err != nil {
			return nil, false, err
		}
		if err := s.recomputePaymentStatus(ctx, tx, row.PaymentID); err != nil {
			return nil, false, err
		}
		return &BillingEvent{Refund: row}, false, nil
	}
}

// adoptRefund returns the row an unknown Stripe refund belongs to: our
// claim still waiting for Stripe's answer (same payment, same amount, not
// yet linked), or a new row for a refund made elsewhere (the Dashboard).
// It returns nil when the payment is not ours.
func (s *Service) adoptRefund(ctx context.Context, tx *ent.Tx, ws uuid.UUID, re *stripe.Refund) (*ent.Refund, error) {
	if re.PaymentIntent == nil {
		return nil, nil
	}
	p, err := tx.Payment.Query().Where(payment.StripePaymentIntentID(re.PaymentIntent.ID)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	claim, err := tx.Refund.Query().
		Where(refund.PaymentID(p.ID), refund.StripeRefundIDIsNil(), refund.Amount(re.Amount)).
		Order(ent.Asc(refund.FieldCreateTime)).First(ctx)
	if err == nil {
		return tx.Refund.UpdateOne(claim).SetStripeRefundID(re.ID).Save(ctx)
	}
	if !ent.IsNotFound(err) {
		return nil, err
	}
	reason := refund.Reason(re.Reason)
	if refund.ReasonValidator(reason) != nil {
		reason = refund.ReasonRequestedByCustomer
	}
	refundedBy := re.Metadata[stripemeta.KeyRefundedBy]
	if refundedBy == "" {
		refundedBy = "stripe"
	}
	return tx.Refund.Create().SetWorkspaceID(ws).SetPaymentID(p.ID).SetStripeRefundID(re.ID).
		SetAmount(max(re.Amount, 1)).SetCurrency(strings.ToLower(string(re.Currency))).SetReason(reason).
		SetRefundedBy(refundedBy).SetStatus(refund.StatusPending).
		Save(ctx)
}
