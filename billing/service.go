package billing

import (
	"log/slog"

	"billingapi/ent"
)

// Service is the billing domain. Build it with New; its methods take the
// viewer from the context and refuse with an *Error.
type Service struct {
	db  *ent.Client
	log *slog.Logger
}

// New returns a Service over the ent client.
func New(db *ent.Client, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{db: db, log: log}
}

// DB returns the ent client, for read paths (GraphQL pagination) that go
// through the same privacy rules as the service.
func (s *Service) DB() *ent.Client { return s.db }
