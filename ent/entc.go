//go:build ignore

// entc.go generates the ent client and its GraphQL helpers (Relay
// pagination and field collection) from ent/schema.
package main

import (
	"log"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"
)

func main() {
	ext, err := entgql.NewExtension()
	if err != nil {
		log.Fatalf("entgql: %v", err)
	}
	err = entc.Generate("./schema", &gen.Config{
		Features: []gen.Feature{
			gen.FeaturePrivacy,
			gen.FeatureEntQL,
			gen.FeatureIntercept,
			gen.FeatureUpsert,
			gen.FeatureLock,
			gen.FeatureSnapshot,
			gen.FeatureVersionedMigration,
			gen.FeatureExecQuery,
		},
	}, entc.Extensions(ext))
	if err != nil {
		log.Fatalf("entc: %v", err)
	}
}
