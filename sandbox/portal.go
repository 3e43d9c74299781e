package sandbox

// routesPortal registers billing portal sessions and their hosted page.
func (s *Server) routesPortal() {}
