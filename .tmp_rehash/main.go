package main

import (
	"log"

	atlas "ariga.io/atlas/sql/migrate"
)

func main() {
	dir, err := atlas.NewLocalDir("internal/database/migrations")
	if err != nil {
		log.Fatal(err)
	}
	sum, err := dir.Checksum()
	if err != nil {
		log.Fatal(err)
	}
	if err := atlas.WriteSumFile(dir, sum); err != nil {
		log.Fatal(err)
	}
}
