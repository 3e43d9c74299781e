package sandbox

// What the families share. Subscriptions (billing.go) implement these;
// Checkout and the portal call them.

// itemSpec is one subscription item: a price and its quantity.
type itemSpec struct {
	Price    string
	Quantity int64
}

// subscriptionSpec is what a new subscription is made of, from
// POST /v1/subscriptions or from a completed Checkout Session.
type subscriptionSpec struct {
	Customer             string
	Items                []itemSpec
	Metadata             map[string]any
	TrialPeriodDays      int64
	TrialEnd             int64 // Unix time; 0 for none
	DefaultPaymentMethod string
	// PaymentBehavior is default_incomplete, allow_incomplete (Stripe's
	// default) or error_if_incomplete.
	PaymentBehavior string
	PromotionCode   string
	Coupon          string
	// OnSession is true when the customer is present (Checkout): a card
	// that asks for 3D Secure leaves the first invoice's PaymentIntent in
	// requires_action instead of failing it.
	OnSession bool
}
