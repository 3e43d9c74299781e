package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"billingapi/auth"
	"billingapi/billing/stripemeta"
	"billingapi/cache"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// Plan is a price of the catalog, found by its lookup key.
type Plan struct {
	LookupKey  string `json:"lookup_key"`
	PriceID    string `json:"price_id"`
	UnitAmount int64  `json:"unit_amount"`
	Currency   string `json:"currency"`
	// Interval is day, week, month or year for a recurring price, "" for a
	// one-time price.
	Interval      string  `json:"interval,omitempty"`
	IntervalCount int64   `json:"interval_count,omitempty"`
	Product       Product `json:"product"`
}

// Product is what a plan sells.
type Product struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Plan is the product's `plan` metadata: the plan name access follows.
	Plan string `json:"plan,omitempty"`
	// Features are the product's `feature_set` metadata, split on commas.
	Features []string `json:"features"`
	// CriticalFeatures are kept while a subscription is past due (the
	// product's `critical_features` metadata).
	CriticalFeatures []string `json:"critical_features,omitempty"`
	// PerSeat is true when the product's `seats` metadata is
	// "per_member": the subscription's quantity follows the member count.
	PerSeat bool `json:"per_seat,omitempty"`
}

// maxLookupKeysPerList is how many lookup keys Stripe accepts in one
// Price.List call.
const maxLookupKeysPerList = 10

// Plans returns the catalog: the plans of PLAN_LOOKUP_KEYS, in that order.
// A key Stripe does not know is left out (and logged).
func (s *Service) Plans(ctx context.Context) ([]Plan, error) {
	keys := s.cfg.PlanLookupKeys
	if len(keys) == 0 {
		return []Plan{}, nil
	}
	return s.cachedPlans(ctx, "plans", len(keys), func() ([]Plan, bool, error) { return s.plans(ctx, keys) })
}

// plans reads plans from the price cache (or Stripe), and whether Redis
// holds them.
func (s *Service) plans(ctx context.Context, keys []string) ([]Plan, bool, error) {
	entries, stored, err := s.prices.Get(ctx, keys, s.loadPrices)
	if err != nil {
		return nil, false, err
	}
	plans := make([]Plan, 0, len(keys))
	for _, k := range keys {
		e := entries[k]
		if !e.Found {
			s.log.WarnContext(ctx, "plan lookup key has no active price in Stripe", "lookup_key", k)
			continue
		}
		var p Plan
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return nil, false, fmt.Errorf("decode cached plan %s: %w", k, err)
		}
		plans = append(plans, p)
	}
	return plans, stored, nil
}

// Price returns the plan with a lookup key: BAD_USER_INPUT for a malformed
// key, NOT_FOUND for one Stripe does not have. Keys Stripe does not have
// are cached too, so asking again for one costs nothing.
func (s *Service) Price(ctx context.Context, lookupKey string) (*Plan, error) {
	if err := ValidateLookupKey("lookupKey", lookupKey); err != nil {
		return nil, err
	}
	plans, err := s.cachedPlans(ctx, "lk:"+lookupKey, 1, func() ([]Plan, bool, error) {
		return s.plans(ctx, []string{lookupKey})
	})
	if err != nil {
		return nil, err
	}
	if len(plans) == 0 {
		return nil, notFound("price")
	}
	return &plans[0], nil
}

// PublicPrice is Price for the public API's price(lookupKey). A caller who
// is not signed in, asking for a key outside the plan catalog that no
// cache holds, spends one of the anonymous lookups' shared budget
// (RATE_LIMITED once it is spent): otherwise anyone could spend the Stripe
// account's own rate limit, which every workspace's billing shares, by
// asking for ever new keys. Such lookups share a Stripe load only with
// each other (cache.WithLoadClass), so that a refusal never reaches
// another caller waiting on the same load. The service's own lookups
// (webhooks, seats, Checkout) call Price, and never spend it.
func (s *Service) PublicPrice(ctx context.Context, lookupKey string) (*Plan, error) {
	if v, _ := auth.FromContext(ctx); s.limit != nil && v.UserID == "" && !slices.Contains(s.cfg.PlanLookupKeys, lookupKey) {
		ctx = cache.WithLoadClass(ctx, anonymousLookups)
	}
	return s.Price(ctx, lookupKey)
}

// loadPrices fetches active prices by lookup key from Stripe with their
// products, ten keys per call, and returns an entry for every key.
func (s *Service) loadPrices(ctx context.Context, lookupKeys []string) (map[string]cache.PriceEntry, error) {
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	if err := s.spendAnonymousLookup(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]cache.PriceEntry, len(lookupKeys))
	for start := 0; start < len(lookupKeys); start += maxLookupKeysPerList {
		chunk := lookupKeys[start:min(start+maxLookupKeysPerList, len(lookupKeys))]
		params := &stripe.PriceListParams{Active: stripe.Bool(true), LookupKeys: stripe.StringSlice(chunk)}
		params.Context = ctx
		params.AddExpand("data.product")
		params.Limit = stripe.Int64(100)
		params.Single = true // one page: ten keys never need more
		iter := s.stripe.Prices.List(params)
		for iter.Next() {
			pr := iter.Price()
			if pr.LookupKey == "" {
				continue
			}
			plan := planFromStripe(pr)
			data, _ := json.Marshal(plan)
			out[pr.LookupKey] = cache.PriceEntry{Found: true, PriceID: pr.ID, ProductID: plan.Product.ID, Data: data}
		}
		if err := iter.Err(); err != nil {
			return nil, s.fromStripe(ctx, "price.list", err)
		}
	}
	for _, k := range lookupKeys {
		if _, ok := out[k]; !ok {
			out[k] = cache.PriceEntry{Found: false}
		}
	}
	return out, nil
}

// planFromStripe maps a Stripe price (with its product expanded) to a Plan.
func planFromStripe(pr *stripe.Price) Plan {
	p := Plan{
		LookupKey:  pr.LookupKey,
		PriceID:    pr.ID,
		UnitAmount: pr.UnitAmount,
		Currency:   string(pr.Currency),
	}
	if pr.Recurring != nil {
		p.Interval = string(pr.Recurring.Interval)
		p.IntervalCount = pr.Recurring.IntervalCount
	}
	if pr.Product != nil {
		p.Product = productFromStripe(pr.Product)
	}
	return p
}

func productFromStripe(sp *stripe.Product) Product {
	return Product{
		ID:          sp.ID,
		Name:        sp.Name,
		Description: sp.Description,
		Plan:        sp.Metadata["plan"],
		Features:    splitFeatures(sp.Metadata["feature_set"]),

		CriticalFeatures: splitFeatures(sp.Metadata["critical_features"]),
		PerSeat:          sp.Metadata["seats"] == "per_member",
	}
}

// splitFeatures splits a comma-separated feature_set, trimming spaces and
// dropping empty items.
func splitFeatures(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ProductInput is a new catalog product.
type ProductInput struct {
	Name        string
	Description string
	// Plan names the plan the product grants (product metadata `plan`).
	Plan     string
	Features []string
	// IdempotencyKey lets a client retry the same creation safely.
	IdempotencyKey string
}

// CreateProduct creates a Stripe product (platform admins only) and returns
// it. Name 1..250 characters, plan a snake_case name, features without
// commas; an equal retry with the same idempotency key returns the same
// product.
func (s *Service) CreateProduct(ctx context.Context, in ProductInput) (*Product, error) {
	v, err := requireAdmin(ctx)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSpace(in.Name)
	if n := utf8.RuneCountInString(name); n == 0 || n > 250 {
		return nil, InvalidInput("name", "Product name must be 1 to 250 characters.")
	}
	if utf8.RuneCountInString(in.Description) > 1000 {
		return nil, InvalidInput("description", "Description must be at most 1000 characters.")
	}
	var features []string
	for _, f := range in.Features {
		f = strings.TrimSpace(f)
		if f == "" || strings.Contains(f, ",") || utf8.RuneCountInString(f) > 100 {
			return nil, InvalidInput("features", "Each feature must be 1 to 100 characters without commas.")
		}
		features = append(features, f)
	}
	plan := strings.TrimSpace(in.Plan)
	if !planNamePattern.MatchString(plan) {
		return nil, InvalidInput("plan", "Plan must be a snake_case name of at most 64 characters, such as pro or team_yearly.")
	}
	meta, err := stripemeta.New().
		Set("plan", plan).
		SetOptional("feature_set", strings.Join(features, ",")).
		Build()
	if err != nil {
		return nil, InvalidInput("features", "Features must be at most 500 characters in all, with no secrets, card numbers or personal data.")
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	params := &stripe.ProductParams{Name: stripe.String(name), Metadata: meta}
	if in.Description != "" {
		params.Description = stripe.String(in.Description)
	}
	params.Context = ctx
	bound := requestParams{"name": name, "description": in.Description, "plan": plan, "features": meta["feature_set"]}
	params.SetIdempotencyKey(catalogKey("product", v.UserID, in.IdempotencyKey, bound))
	sp, err := s.stripe.Products.New(params)
	if err != nil {
		return nil, s.fromStripe(ctx, "product.create", err)
	}
	p := productFromStripe(sp)
	return &p, nil
}

// catalogKey returns the Stripe idempotency key of a catalog create. The
// catalog is Stripe's alone (no table of ours records its creates), so
// Stripe's idempotency is what binds a client's key: the key names the
// request alone, and Stripe replays its first answer for the same
// parameters and refuses others (idempotency_error, answered as
// BAD_USER_INPUT on idempotencyKey), for the 24 hours it keeps a key.
// Without a client key, equal requests share one, so that a double click
// creates one product.
func catalogKey(op, userID, clientKey string, bound requestParams) string {
	if clientKey != "" {
		return idempotencyKey(op, userID, "key", clientKey)
	}
	return idempotencyKey(op, userID, "params", bound.fingerprint())
}

// PriceInput is a new catalog price.
type PriceInput struct {
	ProductID  string
	UnitAmount int64
	Currency   string
	// Interval is day, week, month or year for a recurring price; "" for
	// one-time.
	Interval      string
	IntervalCount int64
	LookupKey     string
	// TransferLookupKey moves the lookup key from the price that has it.
	TransferLookupKey bool
	IdempotencyKey    string
}

// planNamePattern is what a plan name (product metadata `plan`) may be.
var planNamePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

var intervalMaxCount = map[string]int64{"day": 1095, "week": 156, "month": 36, "year": 3}

// CreatePrice creates a Stripe price for a product (platform admins only)
// and returns it as a Plan. Input is validated before Stripe is called;
// the lookup key's cache entry is dropped so the next read sees the price.
func (s *Service) CreatePrice(ctx context.Context, in PriceInput) (*Plan, error) {
	v, err := requireAdmin(ctx)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(in.ProductID, "prod_") || len(in.ProductID) > 255 {
		return nil, InvalidInput("productId", "Product id must be a Stripe product id (prod_...).")
	}
	currency, err := NormalizeCurrency("currency", in.Currency)
	if err != nil {
		return nil, err
	}
	if err := ValidatePriceAmount("unitAmount", in.UnitAmount, currency); err != nil {
		return nil, err
	}
	if err := ValidateLookupKey("lookupKey", in.LookupKey); err != nil {
		return nil, err
	}
	params := &stripe.PriceParams{
		Product:           stripe.String(in.ProductID),
		UnitAmount:        stripe.Int64(in.UnitAmount),
		Currency:          stripe.String(currency),
		LookupKey:         stripe.String(in.LookupKey),
		TransferLookupKey: stripe.Bool(in.TransferLookupKey),
	}
	if in.Interval != "" {
		maxCount, ok := intervalMaxCount[in.Interval]
		if !ok {
			return nil, InvalidInput("recurring.interval", "Interval must be day, week, month or year.")
		}
		count := in.IntervalCount
		if count < 1 || count > maxCount {
			return nil, InvalidInput("recurring.intervalCount", fmt.Sprintf("Interval count must be between 1 and %d for this interval.", maxCount))
		}
		params.Recurring = &stripe.PriceRecurringParams{Interval: stripe.String(in.Interval), IntervalCount: stripe.Int64(count)}
	}
	if s.stripe == nil {
		return nil, errStripeNotConfigured
	}
	params.Context = ctx
	params.AddExpand("product")
	bound := requestParams{"productId": in.ProductID, "unitAmount": fmt.Sprint(in.UnitAmount), "currency": currency,
		"interval": in.Interval, "intervalCount": fmt.Sprint(in.IntervalCount), "lookupKey": in.LookupKey,
		"transferLookupKey": fmt.Sprint(in.TransferLookupKey)}
	params.SetIdempotencyKey(catalogKey("price", v.UserID, in.IdempotencyKey, bound))
	pr, err := s.stripe.Prices.New(params)
	if err != nil {
		return nil, s.fromStripe(ctx, "price.create", err)
	}
	if err := s.prices.InvalidateLookupKeys(ctx, in.LookupKey); err != nil {
		// The entry expires with its TTL; until then reads may be stale.
		s.log.WarnContext(ctx, "price cache invalidation failed", "lookup_key", in.LookupKey, "err", err)
	}
	p := planFromStripe(pr)
	if p.LookupKey == "" {
		p.LookupKey = in.LookupKey
	}
	return &p, nil
}

// anonymousLookups is the price load class (cache.WithLoadClass) of the
// lookups that spend the anonymous lookups' budget when they reach Stripe
// (PublicPrice), and the rate limiter's key of that budget.
const anonymousLookups = "price-lookups:anonymous"

// spendAnonymousLookup spends one of the anonymous lookups' budget when
// ctx's loads are of that class. When Redis cannot count, the lookup is
// refused: the budget protects Stripe's rate limit, and an uncounted burst
// is what it exists to stop.
func (s *Service) spendAnonymousLookup(ctx context.Context) error {
	if cache.LoadClass(ctx) != anonymousLookups {
		return nil
	}
	allowed, retry, err := s.limit.Allow(ctx, anonymousLookups)
	if err != nil {
		s.log.WarnContext(ctx, "rate limiter unavailable; refusing an anonymous price lookup", "err", err)
		return &Error{Code: CodeRateLimited, Message: "Price lookups are briefly unavailable. Please try again in a moment.", RetryAfter: 5 * time.Second}
	}
	if !allowed {
		return &Error{Code: CodeRateLimited, Message: "Too many price lookups. Please wait a moment and try again.", RetryAfter: retry}
	}
	return nil
}

// price.* and product.* events (eventHandlers).

// catalogEvents handles price.* and product.* events.
var catalogEvents = on("catalog object", catalogRefs, (*Service).planCatalog)

// catalogObject is what a price.* or product.* event's object says that
// the price cache needs.
type catalogObject struct {
	ID        string `json:"id"`
	LookupKey string `json:"lookup_key"`
}

// catalogRefs is what a catalog object names: nothing beyond itself.
func catalogRefs(obj *catalogObject) objectRefs { return objectRefs{id: obj.ID} }

// planCatalog drops the price cache entries a price.* or product.* event
// makes stale, and skips the event: it changes no workspace's state. A
// failed invalidation is retried.
func (s *Service) planCatalog(ctx context.Context, _ *readAhead, ev *Event, obj *catalogObject) (uuid.UUID, eventChange, error) {
	if err := s.invalidateCatalog(ctx, ev.Type, obj); err != nil {
		return uuid.Nil, nil, err
	}
	return uuid.Nil, nil, skip("catalog event: price cache invalidated, no workspace state")
}

// invalidateCatalog drops the price cache entries of a price or product.
func (s *Service) invalidateCatalog(ctx context.Context, eventType string, obj *catalogObject) error {
	if strings.HasPrefix(eventType, "product.") {
		return s.prices.InvalidateProduct(ctx, obj.ID)
	}
	if err := s.prices.InvalidatePrice(ctx, obj.ID); err != nil {
		return err
	}
	if obj.LookupKey != "" {
		return s.prices.InvalidateLookupKeys(ctx, obj.LookupKey)
	}
	return nil
}
