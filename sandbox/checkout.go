package sandbox

// routesCheckout registers Checkout Sessions and their hosted page.
func (s *Server) routesCheckout() {}
