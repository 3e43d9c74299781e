// Not Go code: this file only makes tools/schemalint a module of its own,
// so that the billingapi module's ./... (go test, go vet, staticcheck)
// leaves out npm's node_modules here, where a package ships Go files.
module schemalint

go 1.26
