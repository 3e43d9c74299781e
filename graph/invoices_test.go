package graph

import (
	"context"
	"testing"

	"billingapi/ent"
	"billingapi/graph/model"
)

// TestInvoiceStatusIsAnEnum maps each status Stripe gives an invoice to
// its enum value, and a status Stripe may add later to UNKNOWN rather
// than to a value the schema does not have.
func TestInvoiceStatusIsAnEnum(t *testing.T) {
	cases := map[string]model.InvoiceStatus{
		"draft":         model.InvoiceStatusDraft,
		"open":          model.InvoiceStatusOpen,
		"paid":          model.InvoiceStatusPaid,
		"uncollectible": model.InvoiceStatusUncollectible,
		"void":          model.InvoiceStatusVoid,
		"deleted":       model.InvoiceStatusUnknown,
		"":              model.InvoiceStatusUnknown,
	}
	for stored, want := range cases {
		t.Run(stored, func(t *testing.T) {
			got, err := (&invoiceResolver{}).Status(context.Background(), &ent.Invoice{Status: stored})
			if err != nil || got != want {
				t.Fatalf("status %q: got %s, %v; want %s", stored, got, err, want)
			}
		})
	}
}
