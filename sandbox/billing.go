package sandbox

// routesBilling registers subscriptions, invoices, coupons and promotion
// codes, and the clock's billing work (trials, renewals, retries).
func (s *Server) routesBilling() {}
