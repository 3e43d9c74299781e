package billing

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// promotionCodePattern is what a customer-facing promotion code may be.
var promotionCodePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// promotionCodeID checks a customer-facing promotion code with Stripe
// before workspace ws uses it, spending ws's budget (spendWorkspaceBudget),
// and returns its Stripe id; an unknown, inactive, expired or used-up code
// is BAD_USER_INPUT with a message that says which.
func (s *Service) promotionCodeID(ctx context.Context, ws uuid.UUID, code string) (string, error) {
	code = strings.TrimSpace(code)
	if !promotionCodePattern.MatchString(code) {
		return "", InvalidInput("promotionCode", "This promotion code is not valid.")
	}
	if s.stripe == nil {
		return "", errStripeNotConfigured
	}
	if err := spendWorkspaceBudget(ctx, ws); err != nil {
		return "", err
	}
	params := &stripe.PromotionCodeListParams{Code: stripe.String(code)}
	params.Context = ctx
	params.Limit = stripe.Int64(10)
	params.Single = true
	var promo *stripe.PromotionCode
	iter := s.stripe.PromotionCodes.List(params)
	for iter.Next() {
		if p := iter.PromotionCode(); strings.EqualFold(p.Code, code) {
			promo = p
			break
		}
	}
	if err := iter.Err(); err != nil {
		return "", s.fromStripe(ctx, "promotion_code.list", err)
	}
	switch {
	case promo == nil:
		return "", InvalidInput("promotionCode", "This promotion code is not valid.")
	case promo.ExpiresAt > 0 && time.Unix(promo.ExpiresAt, 0).Before(time.Now()),
		!promo.Active, promo.Coupon != nil && !promo.Coupon.Valid:
		return "", InvalidInput("promotionCode", "This promotion code has expired.")
	case promo.MaxRedemptions > 0 && promo.TimesRedeemed >= promo.MaxRedemptions:
		return "", InvalidInput("promotionCode", "This promotion code has been used up.")
	}
	return promo.ID, nil
}
