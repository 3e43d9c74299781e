package sandbox

import (
	"strconv"
	"strings"
)

// Coupons and promotion codes, and the discounts they make when applied to
// a subscription: a percentage or an amount off each invoice, once, for a
// number of months, or forever.

func (s *Server) routesDiscounts() {
	s.handle("POST /v1/coupons", func(c *call) (any, error) {
		for _, p := range []string{"applies_to", "currency_options", "redeem_by"} {
			if c.has(p) {
				return nil, notImplemented("coupons with " + p)
			}
		}
		id := c.str("id")
		if id == "" {
			id = randomID(8)
		} else if s.rec(id) != nil {
			return nil, badRequest("id", "Coupon already exists.")
		}
		percent, hasPercent := lookup(c.params, "percent_off")
		amount, hasAmount := c.int("amount_off")
		if hasPercent == hasAmount {
			return nil, badRequest("percent_off", "You must pass exactly one of percent_off or amount_off.")
		}
		co := s.spec.blank("coupon")
		co["id"] = id
		co["created"] = s.nowOn("")
		co["livemode"] = false
		co["amount_off"] = nil
		co["currency"] = nil
		co["percent_off"] = nil
		if hasPercent {
			p := toFloat(percent)
			if p <= 0 || p > 100 {
				return nil, badRequest("percent_off", "Invalid percent_off: must be greater than 0 and at most 100.")
			}
			co["percent_off"] = p
		} else {
			cur := strings.ToLower(c.str("currency"))
			if !isCurrency(cur) {
				return nil, badRequest("currency", "You must pass currency when passing amount_off.")
			}
			if amount <= 0 {
				return nil, badRequest("amount_off", "Invalid amount_off: must be greater than 0.")
			}
			co["amount_off"] = amount
			co["currency"] = cur
		}
		duration := orDefault(c.str("duration"), "once")
		co["duration"] = duration
		co["duration_in_months"] = nil
		months, hasMonths := c.int("duration_in_months")
		switch {
		case duration == "repeating" && (!hasMonths || months < 1):
			return nil, badRequest("duration_in_months", "You must pass duration_in_months (at least 1) when duration is repeating.")
		case duration == "repeating":
			co["duration_in_months"] = months
		case hasMonths:
			return nil, badRequest("duration_in_months", "duration_in_months is only valid when duration is repeating.")
		}
		co["max_redemptions"] = nil
		if n, ok := c.int("max_redemptions"); ok {
			co["max_redemptions"] = n
		}
		co["name"] = nilIfEmpty(c.str("name"))
		co["redeem_by"] = nil
		co["times_redeemed"] = 0
		co["valid"] = true
		if err := c.metadata(co); err != nil {
			return nil, err
		}
		s.put(co)
		s.emit(c, "coupon.created", co, nil)
		return co, nil
	})
	s.handle("GET /v1/coupons/{id}", func(c *call) (any, error) {
		return s.must("coupon", c.r.PathValue("id"), "id")
	})
	s.handle("GET /v1/coupons", func(c *call) (any, error) {
		return c.page(s.all("coupon", nil))
	})

	s.handle("POST /v1/promotion_codes", func(c *call) (any, error) {
		for _, p := range []string{"customer", "expires_at", "restrictions"} {
			if c.has(p) {
				return nil, notImplemented("promotion codes with " + p)
			}
		}
		co, err := s.must("coupon", c.str("coupon"), "coupon")
		if err != nil {
			return nil, err
		}
		code := c.str("code")
		if code == "" {
			code = strings.ToUpper(randomID(8))
		}
		for _, other := range s.all("promotion_code", nil) {
			if other["active"] == true && strings.EqualFold(str(other["code"]), code) {
				return nil, badRequest("code", "An active promotion code with `code: %s` already exists.", code)
			}
		}
		pc := s.spec.blank("promotion_code")
		pc["id"] = newID("promo")
		pc["code"] = code
		pc["coupon"] = clone(co)
		pc["active"] = !c.has("active") || c.bool("active")
		pc["created"] = s.nowOn("")
		pc["customer"] = nil
		pc["expires_at"] = nil
		pc["livemode"] = false
		pc["max_redemptions"] = nil
		if n, ok := c.int("max_redemptions"); ok {
			pc["max_redemptions"] = n
		}
		pc["restrictions"] = object{"currency_options": object{}, "first_time_transaction": false,
			"minimum_amount": nil, "minimum_amount_currency": nil}
		pc["times_redeemed"] = 0
		if err := c.metadata(pc); err != nil {
			return nil, err
		}
		s.put(pc)
		s.emit(c, "promotion_code.created", pc, nil)
		return pc, nil
	})
	s.handle("GET /v1/promotion_codes/{id}", func(c *call) (any, error) {
		return s.must("promotion_code", c.r.PathValue("id"), "id")
	})
	s.handle("POST /v1/promotion_codes/{id}", func(c *call) (any, error) {
		pc, err := s.must("promotion_code", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		if c.has("restrictions") {
			return nil, notImplemented("promotion code restrictions")
		}
		prev := map[string]any{}
		if c.has("active") {
			prev["active"] = pc["active"]
			pc["active"] = c.bool("active")
		}
		if c.has("metadata") {
			prev["metadata"] = clone(object{"m": pc["metadata"]})["m"]
			if err := c.metadata(pc); err != nil {
				return nil, err
			}
		}
		s.emit(c, "promotion_code.updated", pc, prev)
		return pc, nil
	})
	s.handle("GET /v1/promotion_codes", func(c *call) (any, error) {
		code, coupon := c.str("code"), c.str("coupon")
		return c.page(s.all("promotion_code", func(pc object) bool {
			switch {
			case code != "" && !strings.EqualFold(str(pc["code"]), code),
				coupon != "" && idOf(pc["coupon"]) != coupon,
				c.has("active") && pc["active"] != c.bool("active"):
				return false
			}
			return true
		}))
	})
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	return 0
}

// resolveDiscount checks a coupon id or a promotion code id for a new
// discount and returns the coupon and the promotion code (nil for none).
func (s *Server) resolveDiscount(couponID, promoID string) (coupon, promo object, err *Error) {
	if couponID != "" && promoID != "" {
		return nil, nil, badRequest("promotion_code", "You may only specify one of these parameters: coupon, promotion_code.")
	}
	if promoID != "" {
		promo = s.get("promotion_code", promoID)
		if promo == nil {
			return nil, nil, noSuch("promotion code", "promotion_code", promoID)
		}
		if promo["active"] != true {
			return nil, nil, badRequest("promotion_code", "This promotion code is not active.")
		}
		if m := promo["max_redemptions"]; m != nil && num(promo["times_redeemed"]) >= num(m) {
			return nil, nil, badRequest("promotion_code", "This promotion code has been redeemed the maximum number of times.")
		}
		couponID = idOf(promo["coupon"])
	}
	if couponID == "" {
		return nil, nil, nil
	}
	coupon = s.get("coupon", couponID)
	if coupon == nil {
		return nil, nil, noSuch("coupon", "coupon", couponID)
	}
	if coupon["valid"] != true {
		return nil, nil, badRequest("coupon", "Coupon %s is no longer valid.", couponID)
	}
	if m := coupon["max_redemptions"]; m != nil && num(coupon["times_redeemed"]) >= num(m) {
		return nil, nil, badRequest("coupon", "Coupon %s has been redeemed the maximum number of times.", couponID)
	}
	return coupon, promo, nil
}

// couponFits refuses an amount-off coupon of another currency than what it
// would discount, as Stripe does (a percentage fits any).
func couponFits(coupon object, currency string) *Error {
	if coupon == nil || coupon["amount_off"] == nil || currency == "" || str(coupon["currency"]) == currency {
		return nil
	}
	return badRequest("coupon", "Coupon %s takes %s off; it cannot discount a subscription billed in %s.",
		coupon["id"], coupon["currency"], currency)
}

// newDiscount makes the discount object a coupon (through a promotion code
// or not) gives a subscription, and counts the redemption.
func (s *Server) newDiscount(c *call, coupon, promo object, sub object, start int64) object {
	d := s.spec.blank("discount")
	d["id"] = newID("di")
	d["checkout_session"] = nil
	d["customer"] = sub["customer"]
	d["end"] = nil
	if coupon["duration"] == "repeating" {
		d["end"] = addInterval(start, "month", num(coupon["duration_in_months"]))
	}
	d["invoice"] = nil
	d["invoice_item"] = nil
	d["promotion_code"] = nil
	d["start"] = start
	d["subscription"] = sub["id"]
	coupon["times_redeemed"] = num(coupon["times_redeemed"]) + 1
	if m := coupon["max_redemptions"]; m != nil && num(coupon["times_redeemed"]) >= num(m) {
		coupon["valid"] = false
	}
	d["coupon"] = clone(coupon)
	if promo != nil {
		d["promotion_code"] = promo["id"]
		promo["times_redeemed"] = num(promo["times_redeemed"]) + 1
		promo["coupon"] = clone(coupon)
		if m := promo["max_redemptions"]; m != nil && num(promo["times_redeemed"]) >= num(m) {
			promo["active"] = false
		}
	}
	return d
}

// discountOff is what a discount takes off an amount.
func discountOff(d object, amount int64) int64 {
	if d == nil || amount <= 0 {
		return 0
	}
	co, _ := d["coupon"].(map[string]any)
	if co == nil {
		return 0
	}
	if co["percent_off"] != nil {
		p := toFloat(co["percent_off"])
		return int64(float64(amount)*p/100 + 0.5)
	}
	return min(amount, num(co["amount_off"]))
}
