package sandbox

import (
	"slices"
	"strings"
)

// routesCatalog registers products and prices. Prices keep their lookup
// keys (unique among the account's prices; transfer_lookup_key moves one),
// and the price list honours lookup_keys[], active, product and type.
func (s *Server) routesCatalog() {
	s.handle("POST /v1/products", func(c *call) (any, error) {
		name := strings.TrimSpace(c.str("name"))
		if name == "" {
			return nil, badRequest("name", "Missing required param: name.")
		}
		id := c.str("id")
		if id == "" {
			id = newID("prod")
		} else if s.rec(id) != nil {
			return nil, badRequest("id", "Product already exists.")
		}
		p := s.spec.blank("product")
		p["id"] = id
		p["name"] = name
		p["active"] = !c.has("active") || c.bool("active")
		p["created"] = s.nowOn("")
		p["updated"] = p["created"]
		p["livemode"] = false
		p["description"] = nilIfEmpty(c.str("description"))
		p["images"] = []any{}
		p["features"] = []any{}
		p["type"] = "service"
		p["url"] = nilIfEmpty(c.str("url"))
		if err := c.metadata(p); err != nil {
			return nil, err
		}
		s.put(p)
		s.emit(c, "product.created", p, nil)
		return p, nil
	})
	s.handle("GET /v1/products/{id}", func(c *call) (any, error) {
		return s.must("product", c.r.PathValue("id"), "id")
	})
	s.handle("POST /v1/products/{id}", func(c *call) (any, error) {
		p, err := s.must("product", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		prev := map[string]any{}
		for _, f := range []string{"name", "description"} {
			if c.has(f) {
				prev[f] = p[f]
				p[f] = nilIfEmpty(c.str(f))
			}
		}
		if c.has("active") {
			prev["active"] = p["active"]
			p["active"] = c.bool("active")
		}
		if c.has("metadata") {
			prev["metadata"] = clone(object{"m": p["metadata"]})["m"]
			if err := c.metadata(p); err != nil {
				return nil, err
			}
		}
		p["updated"] = s.nowOn("")
		s.emit(c, "product.updated", p, prev)
		return p, nil
	})
	s.handle("GET /v1/products", func(c *call) (any, error) {
		return c.page(s.all("product", func(p object) bool {
			return !c.has("active") || p["active"] == c.bool("active")
		}))
	})

	s.handle("POST /v1/prices", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/prices", "custom_unit_amount", "transform_quantity", "currency_options"); e != nil {
			return nil, e
		}
		productID := c.str("product")
		if productID == "" {
			if c.has("product_data") {
				return nil, notImplemented("product_data on POST /v1/prices (create the product first)")
			}
			return nil, badRequest("product", "Missing required param: product.")
		}
		if s.get("product", productID) == nil {
			return nil, noSuch("product", "product", productID)
		}
		if c.str("billing_scheme") == "tiered" || c.has("tiers") {
			return nil, notImplemented("tiered prices")
		}
		amount, ok := c.int("unit_amount")
		if !ok {
			if c.has("unit_amount_decimal") {
				return nil, notImplemented("unit_amount_decimal")
			}
			return nil, badRequest("unit_amount", "Missing required param: unit_amount.")
		}
		if amount < 0 {
			return nil, badRequest("unit_amount", "Invalid unit_amount: must be at least 0.")
		}
		currency := strings.ToLower(c.str("currency"))
		if !isCurrency(currency) {
			return nil, badRequest("currency", "Invalid currency: %s.", currency)
		}
		lookupKey := c.str("lookup_key")
		if lookupKey != "" {
			holder := s.priceByLookupKey(lookupKey)
			if holder != nil && !c.bool("transfer_lookup_key") {
				return nil, badRequest("lookup_key", "A price (`%s`) already uses that lookup key.", holder["id"])
			}
			if holder != nil {
				prev := map[string]any{"lookup_key": lookupKey}
				holder["lookup_key"] = nil
				s.emit(c, "price.updated", holder, prev)
			}
		}
		pr := s.spec.blank("price")
		pr["id"] = newID("price")
		pr["active"] = !c.has("active") || c.bool("active")
		pr["billing_scheme"] = "per_unit"
		pr["created"] = s.nowOn("")
		pr["currency"] = currency
		pr["livemode"] = false
		pr["lookup_key"] = nilIfEmpty(lookupKey)
		pr["nickname"] = nilIfEmpty(c.str("nickname"))
		pr["product"] = productID
		pr["tax_behavior"] = orDefault(c.str("tax_behavior"), "unspecified")
		pr["unit_amount"] = amount
		pr["unit_amount_decimal"] = itoa(amount)
		pr["type"] = "one_time"
		if rec := c.hash("recurring"); rec != nil {
			interval := c.str("recurring.interval")
			count, ok := c.int("recurring.interval_count")
			if !ok {
				count = 1
			}
			if max := maxIntervalCount[interval]; count < 1 || count > max {
				return nil, badRequest("recurring[interval_count]", "Invalid recurring[interval_count]: at most one year (%d %ss).", max, interval)
			}
			usage := orDefault(c.str("recurring.usage_type"), "licensed")
			if usage != "licensed" {
				return nil, notImplemented("metered prices (recurring[usage_type]=metered)")
			}
			pr["type"] = "recurring"
			pr["recurring"] = object{"interval": interval, "interval_count": count, "usage_type": usage,
				"aggregate_usage": nil, "trial_period_days": nil}
		}
		if err := c.metadata(pr); err != nil {
			return nil, err
		}
		s.put(pr)
		s.emit(c, "price.created", pr, nil)
		return pr, nil
	})
	s.handle("GET /v1/prices/{id}", func(c *call) (any, error) {
		return s.must("price", c.r.PathValue("id"), "id")
	})
	s.handle("POST /v1/prices/{id}", func(c *call) (any, error) {
		pr, err := s.must("price", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		prev := map[string]any{}
		if c.has("lookup_key") {
			key := c.str("lookup_key")
			if holder := s.priceByLookupKey(key); key != "" && holder != nil && holder["id"] != pr["id"] {
				if !c.bool("transfer_lookup_key") {
					return nil, badRequest("lookup_key", "A price (`%s`) already uses that lookup key.", holder["id"])
				}
				holder["lookup_key"] = nil
				s.emit(c, "price.updated", holder, map[string]any{"lookup_key": key})
			}
			prev["lookup_key"] = pr["lookup_key"]
			pr["lookup_key"] = nilIfEmpty(key)
		}
		if c.has("active") {
			prev["active"] = pr["active"]
			pr["active"] = c.bool("active")
		}
		if c.has("nickname") {
			prev["nickname"] = pr["nickname"]
			pr["nickname"] = nilIfEmpty(c.str("nickname"))
		}
		if c.has("metadata") {
			prev["metadata"] = clone(object{"m": pr["metadata"]})["m"]
			if err := c.metadata(pr); err != nil {
				return nil, err
			}
		}
		s.emit(c, "price.updated", pr, prev)
		return pr, nil
	})
	s.handle("GET /v1/prices", func(c *call) (any, error) {
		keys := c.strings("lookup_keys")
		product := c.str("product")
		typ := c.str("type")
		currency := c.str("currency")
		return c.page(s.all("price", func(p object) bool {
			switch {
			case c.has("active") && p["active"] != c.bool("active"),
				len(keys) > 0 && !slices.Contains(keys, str(p["lookup_key"])),
				product != "" && p["product"] != product,
				typ != "" && p["type"] != typ,
				currency != "" && p["currency"] != currency:
				return false
			}
			return true
		}))
	})
}

func (s *Server) priceByLookupKey(key string) object {
	for _, p := range s.all("price", nil) {
		if p["lookup_key"] == key {
			return p
		}
	}
	return nil
}

// must returns the stored object or Stripe's 404 naming it.
func (s *Server) must(kind, id, param string) (object, *Error) {
	if o := s.get(kind, id); o != nil {
		return o, nil
	}
	return nil, noSuch(strings.ReplaceAll(kind, "_", " "), param, id)
}

var maxIntervalCount = map[string]int64{"day": 365, "week": 52, "month": 12, "year": 1}

// isCurrency accepts a three-letter lowercase ISO code.
func isCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for _, r := range c {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
