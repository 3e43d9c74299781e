package sandbox

// Refunds of card payments. At API version 2023-10-16 Stripe announces a
// refund of a charge with charge.refunded (the charge, its amount_refunded
// and refunds); refund.created is sent only for refunds without a charge,
// which the sandbox does not make (Stripe's changelog, 2024-10-28.acacia,
// "Adds created, updated, and failed events for all refund types"). Card
// refunds succeed at once in test mode.

// refundRefused are refund parameters the sandbox does not implement
// (customer balance refunds, Connect).
var refundRefused = []string{"currency", "customer", "instructions_email", "origin", "refund_application_fee", "reverse_transfer"}

func (s *Server) routesRefunds() {
	s.handle("POST /v1/refunds", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/refunds", refundRefused...); e != nil {
			return nil, e
		}
		ch, err := s.refundedCharge(c.str("payment_intent"), c.str("charge"))
		if err != nil {
			return nil, err
		}
		remaining := num(ch["amount"]) - num(ch["amount_refunded"])
		if remaining <= 0 {
			e := badRequest("charge", "Charge %s has already been refunded.", ch["id"])
			e.Code = "charge_already_refunded"
			return nil, e
		}
		amount, sent := c.int("amount")
		if !sent {
			amount = remaining
		}
		cur := str(ch["currency"])
		switch {
		case amount <= 0:
			return nil, badRequest("amount", "Invalid positive integer")
		case amount > remaining:
			return nil, badRequest("amount", "Refund amount (%s %s) is greater than unrefunded amount on charge (%s %s)",
				formatAmount(amount, cur), cur, formatAmount(remaining, cur), cur)
		}
		re := s.spec.blank("refund")
		id := newID("re")
		re["id"] = id
		re["amount"] = amount
		re["balance_transaction"] = nil
		re["charge"] = ch["id"]
		re["created"] = s.nowOn(s.clockOfObject(ch))
		re["currency"] = cur
		re["payment_intent"] = ch["payment_intent"]
		re["reason"] = nilIfEmpty(c.str("reason"))
		re["receipt_number"] = nil
		re["source_transfer_reversal"] = nil
		re["status"] = "succeeded"
		re["transfer_reversal"] = nil
		re["destination_details"] = object{"type": "card", "card": object{"reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}}
		if err := c.metadata(re); err != nil {
			return nil, err
		}
		s.put(re)

		prev := map[string]any{"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
		ch["amount_refunded"] = num(ch["amount_refunded"]) + amount
		ch["refunded"] = num(ch["amount_refunded"]) == num(ch["amount"])
		s.emit(c, "charge.refunded", ch, prev)
		return re, nil
	})
	s.handle("GET /v1/refunds/{id}", func(c *call) (any, error) {
		if re := s.get("refund", c.r.PathValue("id")); re != nil {
			return re, nil
		}
		return nil, noSuch("refund", "id", c.r.PathValue("id"))
	})
	s.handle("GET /v1/refunds", func(c *call) (any, error) {
		piID, chID := c.str("payment_intent"), c.str("charge")
		return c.page(s.all("refund", func(re object) bool {
			return (piID == "" || idOf(re["payment_intent"]) == piID) && (chID == "" || idOf(re["charge"]) == chID)
		}))
	})
}

// refundedCharge returns the charge a refund request names, by its
// PaymentIntent (the intent's successful charge) or by its id.
func (s *Server) refundedCharge(piID, chID string) (object, *Error) {
	if piID == "" && chID == "" {
		return nil, badRequest("", "One of the following params should be provided for this request: payment_intent or charge.")
	}
	var ch object
	if chID != "" {
		if ch = s.get("charge", chID); ch == nil {
			return nil, noSuch("charge", "charge", chID)
		}
	}
	if piID != "" {
		pi := s.get("payment_intent", piID)
		if pi == nil {
			return nil, noSuch("payment_intent", "payment_intent", piID)
		}
		if ch != nil && idOf(ch["payment_intent"]) != piID {
			return nil, badRequest("charge", "The charge %s does not belong to the PaymentIntent %s.", chID, piID)
		}
		if ch == nil {
			if pi["status"] != "succeeded" {
				return nil, badRequest("payment_intent", "This PaymentIntent (%s) does not have a successful charge to refund.", piID)
			}
			ch = s.get("charge", idOf(pi["latest_charge"]))
		}
	}
	if ch == nil || ch["status"] != "succeeded" {
		return nil, badRequest("charge", "This charge (%s) did not succeed: there is nothing to refund.", idOf(ch["id"]))
	}
	return ch, nil
}

// chargeRefunds is a charge's refunds list, newest first, for
// expand[]=refunds.
func (s *Server) chargeRefunds(chID string) object {
	data := []any{}
	for _, re := range s.all("refund", func(re object) bool { return re["charge"] == chID }) {
		data = append(data, clone(re))
	}
	return object{"object": "list", "data": data, "has_more": false, "url": "/v1/charges/" + chID + "/refunds"}
}
