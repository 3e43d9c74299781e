package sandbox

import (
	"strconv"
)

// routesCustomers registers customers: created (optionally on a test
// clock), read, updated (email, name, metadata, the default payment method
// for invoices) and listed.
func (s *Server) routesCustomers() {
	s.handle("POST /v1/customers", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/customers", customerRefused...); e != nil {
			return nil, e
		}
		clock := c.str("test_clock")
		if clock != "" && s.get("test_helpers.test_clock", clock) == nil {
			return nil, noSuch("test clock", "test_clock", clock)
		}
		cu := s.spec.blank("customer")
		cu["id"] = newID("cus")
		cu["test_clock"] = nilIfEmpty(clock)
		cu["created"] = s.nowOn(clock)
		cu["email"] = nilIfEmpty(c.str("email"))
		cu["name"] = nilIfEmpty(c.str("name"))
		cu["description"] = nilIfEmpty(c.str("description"))
		cu["phone"] = nilIfEmpty(c.str("phone"))
		cu["livemode"] = false
		cu["balance"] = 0
		cu["delinquent"] = false
		cu["invoice_prefix"] = randomID(8)
		cu["next_invoice_sequence"] = 1
		cu["preferred_locales"] = []any{}
		cu["tax_exempt"] = "none"
		cu["invoice_settings"] = object{"custom_fields": nil, "default_payment_method": nil, "footer": nil, "rendering_options": nil}
		if err := c.metadata(cu); err != nil {
			return nil, err
		}
		s.put(cu)
		s.emit(c, "customer.created", cu, nil)
		if pm := c.str("payment_method"); pm != "" {
			if _, err := s.attachPaymentMethod(c, pm, str(cu["id"])); err != nil {
				return nil, err
			}
		}
		if def := c.str("invoice_settings.default_payment_method"); def != "" {
			if err := s.setDefaultPaymentMethod(c, cu, def); err != nil {
				return nil, err
			}
		}
		return cu, nil
	})
	s.handle("GET /v1/customers/{id}", func(c *call) (any, error) {
		return s.must("customer", c.r.PathValue("id"), "id")
	})
	s.handle("POST /v1/customers/{id}", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/customers/{id}", customerRefused...); e != nil {
			return nil, e
		}
		cu, err := s.must("customer", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		prev := map[string]any{}
		for _, f := range []string{"email", "name", "description", "phone"} {
			if c.has(f) {
				prev[f] = cu[f]
				cu[f] = nilIfEmpty(c.str(f))
			}
		}
		if c.has("metadata") {
			prev["metadata"] = clone(object{"m": cu["metadata"]})["m"]
			if err := c.metadata(cu); err != nil {
				return nil, err
			}
		}
		if c.has("invoice_settings.default_payment_method") {
			prev["invoice_settings"] = clone(cu["invoice_settings"].(object))
			def := c.str("invoice_settings.default_payment_method")
			if def == "" {
				cu["invoice_settings"].(object)["default_payment_method"] = nil
			} else if err := s.setDefaultPaymentMethod(c, cu, def); err != nil {
				return nil, err
			}
		}
		if len(prev) > 0 {
			s.emit(c, "customer.updated", cu, prev)
		}
		return cu, nil
	})
	s.handle("GET /v1/customers", func(c *call) (any, error) {
		email := c.str("email")
		clock := c.str("test_clock")
		return c.page(s.all("customer", func(cu object) bool {
			return (email == "" || cu["email"] == email) && (clock == "" || cu["test_clock"] == clock)
		}))
	})
}

// customerRefused are customer parameters the sandbox does not keep and
// that would change what a customer is billed or shows.
var customerRefused = []string{"address", "balance", "cash_balance", "coupon", "invoice_prefix", "next_invoice_sequence",
	"promotion_code", "shipping", "source", "tax", "tax_exempt", "tax_id_data", "default_source"}

// setDefaultPaymentMethod makes a payment method the customer's default for
// invoices; it must be attached to that customer.
func (s *Server) setDefaultPaymentMethod(c *call, cu object, pmID string) *Error {
	pm := s.get("payment_method", pmID)
	if pm == nil {
		return noSuch("PaymentMethod", "invoice_settings[default_payment_method]", pmID)
	}
	if idOf(pm["customer"]) != cu["id"] {
		return badRequest("invoice_settings[default_payment_method]",
			"The PaymentMethod %s is not attached to customer %s; attach it first.", pmID, cu["id"])
	}
	cu["invoice_settings"].(object)["default_payment_method"] = pmID
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
