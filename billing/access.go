package billing

import (
	"log/slog"
	"slices"
)

// AccessLevel is what a workspace's subscription status grants.
type AccessLevel string

// The access levels, from most to least.
const (
	// AccessFull: active or trialing; every feature of the plan.
	AccessFull AccessLevel = "FULL"
	// AccessLimited: past_due; access with a warning, critical features only.
	AccessLimited AccessLevel = "LIMITED"
	// AccessRestricted: unpaid; no plan features until the balance is paid.
	AccessRestricted AccessLevel = "RESTRICTED"
	// AccessNone: canceled, incomplete, incomplete_expired, paused, or a
	// status we do not know; the plan grants nothing.
	AccessNone AccessLevel = "NONE"
	// AccessFree: no subscription at all; the free level.
	AccessFree AccessLevel = "FREE"
)

// Access is what a workspace may use now, and what to tell its users.
type Access struct {
	Level AccessLevel `json:"level"`
	// Warning is shown to the workspace's users; "" when all is well.
	Warning  string   `json:"warning,omitempty"`
	Features []string `json:"features"`
}

// Warnings shown with an access level.
const (
	warnPastDue  = "Your last payment failed. Update your payment method to keep full access."
	warnUnpaid   = "Your subscription is unpaid. Access is restricted until the balance is paid."
	warnCanceled = "Your subscription has ended."
	warnPending  = "Your subscription starts once the first payment is confirmed."
	warnEnding   = "Your subscription is set to end at the close of the current period."
)

// AccessFor returns the access a subscription status grants, given the
// plan's features and the subset marked critical (kept while past_due). A
// status Stripe may add later grants nothing and is logged. An empty
// status means no subscription: the free level.
func AccessFor(status string, features, critical []string, cancelAtPeriodEnd bool, log *slog.Logger) Access {
	switch status {
	case "":
		return Access{Level: AccessFree, Features: []string{}}
	case "active", "trialing":
		a := Access{Level: AccessFull, Features: orEmpty(features)}
		if cancelAtPeriodEnd {
			a.Warning = warnEnding
		}
		return a
	case "past_due":
		kept := []string{}
		for _, f := range features {
			if slices.Contains(critical, f) {
				kept = append(kept, f)
			}
		}
		return Access{Level: AccessLimited, Warning: warnPastDue, Features: kept}
	case "unpaid":
		return Access{Level: AccessRestricted, Warning: warnUnpaid, Features: []string{}}
	case "canceled":
		return Access{Level: AccessNone, Warning: warnCanceled, Features: []string{}}
	case "incomplete", "creating":
		return Access{Level: AccessNone, Warning: warnPending, Features: []string{}}
	case "incomplete_expired", "paused":
		return Access{Level: AccessNone, Features: []string{}}
	default:
		if log != nil {
			log.Warn("unknown subscription status grants no access", "status", status)
		}
		return Access{Level: AccessNone, Features: []string{}}
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
