package sandbox

// routesBilling registers subscriptions, invoices, coupons and promotion
// codes, and the clock's billing work (trials, renewals, retries).
func (s *Server) routesBilling() {
	s.routesSubscriptions()
	s.routesInvoices()
	s.routesDiscounts()
	s.onIntent(s.invoiceIntentHook)
	s.schedule(s.billingDue)
}

// trialWillEndNotice is how long before a trial's end Stripe sends
// customer.subscription.trial_will_end.
const trialWillEndNotice = 3 * day

// billingDue finds the earliest billing work due on the clock: an
// incomplete subscription expiring, a trial's three-day notice, a period
// ending (renewal, or the end of a subscription canceled at period end),
// a renewal invoice's draft hour ending, a failed invoice's next retry.
func (s *Server) billingDue(clock string, until int64) (int64, func() error) {
	best, run := int64(0), (func() error)(nil)
	consider := func(at int64, f func() error) {
		if at <= until && (run == nil || at < best) {
			best, run = at, f
		}
	}
	for _, r := range s.st.Objects {
		o := r.Obj
		switch o["object"] {
		case "subscription":
			if s.clockOfObject(o) != clock {
				continue
			}
			sub := o
			si := r.Internal
			switch sub["status"] {
			case "incomplete":
				consider(num(sub["created"])+incompleteWindow, func() error { s.expireIncomplete(sub); return nil })
				continue
			case "trialing":
				if si["trial_will_end_sent"] != true && sub["trial_end"] != nil &&
					num(sub["trial_end"])-trialWillEndNotice >= num(sub["trial_start"]) {
					consider(num(sub["trial_end"])-trialWillEndNotice, func() error {
						s.internal(str(sub["id"]))["trial_will_end_sent"] = true
						s.emit(nil, "customer.subscription.trial_will_end", sub, nil)
						return nil
					})
				}
			case "active", "past_due":
			case "unpaid":
				if sub["cancel_at_period_end"] != true {
					continue
				}
			default:
				continue
			}
			consider(num(sub["current_period_end"]), func() error { s.periodEnds(sub); return nil })
		case "invoice":
			if s.clockOfObject(o) != clock {
				continue
			}
			inv := o
			switch {
			case o["status"] == "draft" && r.Internal["finalize_at"] != nil:
				consider(num(r.Internal["finalize_at"]), func() error { s.finalizeDraft(inv); return nil })
			case o["status"] == "open" && o["next_payment_attempt"] != nil:
				consider(num(inv["next_payment_attempt"]), func() error { s.retryInvoice(inv); return nil })
			}
		}
	}
	return best, run
}

// expireIncomplete ends a subscription whose first invoice stayed unpaid
// for 23 hours: incomplete_expired, its invoice voided.
func (s *Server) expireIncomplete(sub object) {
	if inv := s.get("invoice", idOf(sub["latest_invoice"])); inv != nil && inv["status"] == "open" {
		s.voidInvoice(nil, inv)
	}
	before := clone(sub)
	now := s.nowOn(s.clockOfObject(sub))
	sub["status"] = "incomplete_expired"
	sub["ended_at"] = now
	s.emit(nil, "customer.subscription.updated", sub, changed(before, sub))
}

// periodEnds moves a subscription past its current period's end: it ends
// (canceled at period end), or renews: the new period (a trial turning
// active), then the renewal invoice, charged off-session.
func (s *Server) periodEnds(sub object) {
	if sub["cancel_at_period_end"] == true {
		s.endSubscription(nil, sub, nil)
		return
	}
	si := s.internal(str(sub["id"]))
	before := clone(sub)
	cycle := num(si["cycle"]) + 1
	si["cycle"] = cycle
	si["previous_period_start"] = sub["current_period_start"]
	sub["current_period_start"] = sub["current_period_end"]
	sub["current_period_end"] = s.periodEnd(sub, cycle)
	if sub["status"] == "trialing" {
		sub["status"] = "active"
	}
	s.emit(nil, "customer.subscription.updated", sub, changed(before, sub))
	s.invoiceCycle(nil, sub, "subscription_cycle", "allow_incomplete", true)
}

// retryInvoice makes a failed invoice's next attempt with the payment
// method its subscription would use now (a new default card recovers it).
func (s *Server) retryInvoice(inv object) {
	ii := s.internal(str(inv["id"]))
	ii["retries"] = num(ii["retries"]) + 1
	inv["next_payment_attempt"] = nil
	var pm object
	if sub := s.get("subscription", idOf(inv["subscription"])); sub != nil {
		pm = s.subPaymentMethod(sub)
	}
	s.chargeInvoice(nil, inv, pm, true)
}
