package model

import (
	"billingapi/ent"
	"billingapi/graph/relay"
)

// The schema's Relay connections, bound in gqlgen.yml. Each is a
// relay.Connection of its ent type, paged by relay.Paginate.
type (
	PaymentConnection         = relay.Connection[*ent.Payment]
	PaymentEdge               = relay.Edge[*ent.Payment]
	CheckoutSessionConnection = relay.Connection[*ent.CheckoutSession]
	CheckoutSessionEdge       = relay.Edge[*ent.CheckoutSession]
	InvoiceConnection         = relay.Connection[*ent.Invoice]
	InvoiceEdge               = relay.Edge[*ent.Invoice]
	WebhookEventConnection    = relay.Connection[*ent.WebhookEvent]
	WebhookEventEdge          = relay.Edge[*ent.WebhookEvent]
	WorkspaceConnection       = relay.Connection[*ent.Workspace]
	WorkspaceEdge             = relay.Edge[*ent.Workspace]
	MembershipConnection      = relay.Connection[*ent.Membership]
	MembershipEdge            = relay.Edge[*ent.Membership]
	InvitationConnection      = relay.Connection[*ent.Invitation]
	InvitationEdge            = relay.Edge[*ent.Invitation]
)
