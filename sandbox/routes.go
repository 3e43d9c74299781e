package sandbox

import (
	"fmt"
	"net/http"
)

// routes registers every endpoint the sandbox implements, family by
// family; anything else under /v1 is refused by name.
func (s *Server) routes() {
	s.routesEvents()
	s.routesClocks()
	s.routesCatalog()
	s.routesCustomers()
	s.routesPayments()
	s.routesBilling()
	s.routesCheckout()
	s.routesPortal()
}

// schedule registers a family's due work (see scheduler).
func (s *Server) schedule(f scheduler) { s.schedulers = append(s.schedulers, f) }

// page registers a hosted page, e.g. "GET /checkout/{id}".
func (s *Server) page(pattern string, h http.HandlerFunc) { s.pages.HandleFunc(pattern, h) }

// servePages serves the hosted pages (Checkout, portal, 3D Secure); their
// forms change state under the same lock as API requests.
func (s *Server) servePages(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.pages.Handler(r)
	if pattern == "" {
		http.Error(w, fmt.Sprintf("The Stripe sandbox has no page at %s.", r.URL.Path), http.StatusNotFound)
		return
	}
	_ = h
	s.pages.ServeHTTP(w, r)
}
