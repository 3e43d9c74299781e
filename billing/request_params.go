package billing

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"

	"github.com/google/uuid"
)

// An idempotency key is bound to every parameter of its request that
// changes what is created: the same key with any other parameter is
// refused (errKeyReused), the same key with the same parameters answers
// with what the first request made. The key's request key (the hash of
// the workspace, or for a refund the payment, the user and the client's
// key) finds the row; the row's id says what it was claimed for. Tables
// hold some parameters in columns but not all (a payment's
// paymentMethodId, a Checkout's allowPromotionCodes, a subscription's
// trial and promotion code), and no column is added for them: the id of a
// claimed row is derived from its request key and a fingerprint of all its
// parameters (claimID, a version 8 UUID), so the row itself records them,
// is checked before anything else is done with it (also while its request
// is still talking to Stripe), and is never changed after. Rows claimed
// before ids were derived (random, version 4) are compared on the columns
// they have.
//
// The Stripe idempotency key stays the request key, without the
// fingerprint: when a claim was released after an error that Stripe may
// have acted on anyway (a timeout), a retry with other parameters must not
// make a second object under the same key. Stripe refuses it
// (idempotency_error), which fromStripe answers as errKeyReused does.
//
// The catalog keeps no rows of its own: catalogKey binds its keys through
// Stripe's record of them. A SetupIntent has no parameter beyond its
// scope.

// requestParams are the parameters of a create request that change what it
// creates, named as the GraphQL input names them, each as its value's
// text ("" for an omitted optional one). The workspace (or payment) is not
// among them: it is part of the request key, the scope within which a key
// names one request. A parameter added later must be given only when it is
// set, so that the requests made before keep their fingerprints.
type requestParams map[string]string

// fingerprint returns a digest of the parameters, the same for equal
// parameters whatever their order. Each name and value is written with its
// length, so that no text can pass for another split.
func (p requestParams) fingerprint() string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(p)) {
		for _, s := range []string{name, p[name]} {
			h.Write(binary.AppendUvarint(nil, uint64(len(s))))
			h.Write([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// claimNamespace is the UUID namespace of claimed rows' ids.
var claimNamespace = uuid.MustParse("5f0c3a8e-2b7d-4c61-9a44-1d8e6b0f7c21")

// claimIDVersion is the UUID version of an id derived by claimID.
const claimIDVersion = 8

// claimID returns the id a row claimed for request reqKey with params is
// inserted with.
func claimID(reqKey string, params requestParams) uuid.UUID {
	return uuid.NewHash(sha256.New(), claimNamespace, []byte(reqKey+"\x00"+params.fingerprint()), claimIDVersion)
}

// claimedWith reports whether a row found with a request key was claimed
// with the parameters whose claimID is id. A row claimed before ids were
// derived is judged by legacy, which compares the columns it has.
func claimedWith(rowID, id uuid.UUID, legacy func() bool) bool {
	if rowID.Version() != claimIDVersion {
		return legacy()
	}
	return rowID == id
}

// errKeyReused refuses an idempotency key already used with other
// parameters.
var errKeyReused = InvalidInput("idempotencyKey", "This idempotency key was already used for a request with other details. Use a new key for a new request.")
