package sandbox

// Placeholders until subscriptions land; billing.go replaces this file.

// startSubscription creates a subscription and its first invoice.
func (s *Server) startSubscription(c *call, in subscriptionSpec) (object, *Error) {
	return nil, notImplemented("subscriptions")
}

// setCancelAtPeriodEnd schedules or unschedules a subscription's
// cancellation at the end of its period.
func (s *Server) setCancelAtPeriodEnd(c *call, sub object, cancel bool) *Error {
	return notImplemented("subscriptions")
}
