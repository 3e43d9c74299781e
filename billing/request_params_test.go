package billing

import (
	"testing"

	"github.com/google/uuid"
)

func TestRequestParamsFingerprint(t *testing.T) {
	base := requestParams{"amount": "1500", "currency": "usd", "purpose": "credits_pack", "paymentMethodId": ""}
	same := requestParams{"paymentMethodId": "", "purpose": "credits_pack", "currency": "usd", "amount": "1500"}
	if base.fingerprint() != same.fingerprint() {
		t.Error("the same parameters in another order have another fingerprint")
	}
	for name, other := range map[string]requestParams{
		"AnotherValue":           {"amount": "1600", "currency": "usd", "purpose": "credits_pack", "paymentMethodId": ""},
		"AnAddedValue":           {"amount": "1500", "currency": "usd", "purpose": "credits_pack", "paymentMethodId": "pm_card_visa"},
		"AValueMovedToAnother":   {"amount": "1500", "currency": "usdcredits_pack", "purpose": "", "paymentMethodId": ""},
		"ANameAndValueRedivided": {"amount": "1500", "currency": "usd", "purpose": "credits_pack", "paymentMethodI": "d"},
	} {
		if other.fingerprint() == base.fingerprint() {
			t.Errorf("%s: the fingerprint did not change", name)
		}
	}
}

func TestClaimIDBindsTheKeyToItsParameters(t *testing.T) {
	p := requestParams{"lookupKey": "pro_monthly", "quantity": "1"}
	id := claimID("cs-key", p)
	if id.Version() != claimIDVersion || id.Variant() != uuid.RFC4122 {
		t.Fatalf("claimID = %s: version %d, variant %s", id, id.Version(), id.Variant())
	}
	if claimID("cs-key", requestParams{"quantity": "1", "lookupKey": "pro_monthly"}) != id {
		t.Error("the same request has another id")
	}
	if claimID("cs-key", requestParams{"lookupKey": "pro_monthly", "quantity": "2"}) == id {
		t.Error("another quantity has the same id")
	}
	if claimID("cs-other", p) == id {
		t.Error("another request key has the same id")
	}

	legacyCalled := false
	legacy := func(ok bool) func() bool { return func() bool { legacyCalled = true; return ok } }
	if !claimedWith(id, id, legacy(false)) || legacyCalled {
		t.Error("a row with the derived id is not the same request, or was compared on its columns")
	}
	if claimedWith(claimID("cs-key", requestParams{"lookupKey": "pro_yearly", "quantity": "1"}), id, legacy(true)) || legacyCalled {
		t.Error("a row claimed with other parameters is the same request")
	}
	old := uuid.New()
	if !claimedWith(old, id, legacy(true)) || !legacyCalled {
		t.Error("a row with a random id was not compared on its columns")
	}
	if claimedWith(old, id, legacy(false)) {
		t.Error("a row with a random id whose columns differ is the same request")
	}
}
