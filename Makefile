# Billing API. `make run` starts it on embedded defaults; `make test` runs
# every test. Both work on a fresh machine with Go installed.

GO              ?= go
BIN             := bin
STRIPE_MOCK     := $(BIN)/stripe-mock

# Development defaults for `make run`: the offline Stripe sandbox with test
# keys, a development webhook secret and the catalog it seeds. Any of them
# can be overridden from the shell.
SANDBOX_ADDR    ?= 127.0.0.1:12111
RUN_ENV := STRIPE_API_BASE=$${STRIPE_API_BASE:-http://$(SANDBOX_ADDR)} \
	STRIPE_SECRET_KEY=$${STRIPE_SECRET_KEY:-sk_test_sandbox} \
	STRIPE_PUBLISHABLE_KEY=$${STRIPE_PUBLISHABLE_KEY:-pk_test_sandbox} \
	STRIPE_WEBHOOK_SECRET=$${STRIPE_WEBHOOK_SECRET:-whsec_development_only_secret} \
	PLAN_LOOKUP_KEYS=$${PLAN_LOOKUP_KEYS:-starter_monthly,starter_yearly,pro_monthly,pro_yearly} \
	SANDBOX_ADDR=$(SANDBOX_ADDR)

.PHONY: run test test-unit scenarios bench vet playground lint fuzz stripe-mock generate migrate-diff check-generate clean help lint-schema

# staticcheck, pinned; run from the module proxy like the other tools.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Hand-written packages: generated ent and gqlgen code is left to its
# generators (ent/schema, which we write, is checked).
LINT_PKGS = $$($(GO) list ./... | grep -v -e '/ent$$' -e '/graph/generated' | grep -v -E '/ent/[a-z]+$$' ) ./ent/schema
# Fuzz budgets are execution counts, each about 10 s on this machine: with
# a duration, Go 1.26's fuzz coordinator now and then fails a run at its
# deadline ("context deadline exceeded", no failing input) when its
# workers are short of CPU (go.dev/issue/75804, fixed in Go 1.27); a count
# has no deadline to race. FUZZTIME (a count or a duration) overrides all.
FUZZTIME ?=

## run: start the API on :8000 with embedded SQLite, embedded Redis and the offline Stripe sandbox (seeded catalog)
run:
	@echo "== building bin/server (the first build compiles every dependency: about two minutes on 2 cores)"
	@start=$$(date +%s); $(GO) build -o $(BIN)/server ./server && echo "== built in $$(( $$(date +%s) - start ))s"
	@set -e; \
	$(RUN_ENV) $(BIN)/server sandbox --seed & sandbox=$$!; \
	trap 'kill $$sandbox 2>/dev/null; wait $$sandbox 2>/dev/null' EXIT INT TERM; \
	$(RUN_ENV) $(BIN)/server

## test: vet, then every test with the race detector (needs PostgreSQL and Redis on loopback)
test: vet $(STRIPE_MOCK)
	STRIPE_MOCK_BIN=$(abspath $(STRIPE_MOCK)) $(GO) test -race -count=1 -timeout 20m ./...

## test-unit: the inner loop: go test -short, no race detector (skips the process, fault and chaos tests that make test runs)
test-unit: $(STRIPE_MOCK)
	STRIPE_MOCK_BIN=$(abspath $(STRIPE_MOCK)) $(GO) test -short -count=1 ./...

## scenarios: scripted billing lifecycles (trial, renewals, failed renewals, plan change, cancel, resume, 3D Secure, refunds, abandoned Checkout) through the API against a fresh sandbox, printed as timelines
scenarios:
	$(GO) run ./server scenarios

## bench: the load benchmark (bench/, about 15 minutes; BENCH_FLAGS=-quick for a short run) against PostgreSQL, Redis and stripe-mock; writes bench/results/latest.md and .json
bench: $(STRIPE_MOCK)
	BENCH_COMMAND="make bench $(BENCH_FLAGS)" $(GO) run ./bench $(BENCH_FLAGS)

## vet: gofmt check and go vet
vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "not gofmt-ed:" $$unformatted >&2; exit 1; fi
	$(GO) vet ./...

## playground: rebuild the embedded admin playground (server/playground) from playground/ with npm and esbuild
# Its output is committed, so run and test never need Node; run this after
# changing playground/ and commit the result.
playground:
	cd playground && npm ci --no-audit --no-fund && npm run build

## lint: go vet, then staticcheck on hand-written code
lint: vet
	$(GO) run $(STATICCHECK) $(LINT_PKGS)

## fuzz: run each fuzz target for its budget, or FUZZTIME (committed corpora under testdata/fuzz)
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzVerify -fuzztime=$(or $(FUZZTIME),300000x) ./auth
	$(GO) test -run='^$$' -fuzz=FuzzMetadataBuilder -fuzztime=$(or $(FUZZTIME),5000x) ./billing/stripemeta
	$(GO) test -run='^$$' -fuzz=FuzzAmountValidator -fuzztime=$(or $(FUZZTIME),20000x) ./billing
	$(GO) test -run='^$$' -fuzz=FuzzWebhookEndpoint -fuzztime=$(or $(FUZZTIME),5000x) ./webhooks

## lint-schema: lint schema.graphql (the printed schema) with graphql-eslint; rules and reasons in tools/schemalint (needs Node.js and npm)
lint-schema:
	cd tools/schemalint && npm ci --no-audit --no-fund --loglevel=error && npm run --silent lint

## stripe-mock: build the pinned Stripe API mock (tools.go pins its version)
stripe-mock: $(STRIPE_MOCK)
$(STRIPE_MOCK): go.mod go.sum
	@mkdir -p $(BIN)
	$(GO) build -o $(STRIPE_MOCK) github.com/stripe/stripe-mock

## generate: regenerate ent and gqlgen code, and print the GraphQL schema to schema.graphql
generate:
	$(GO) generate ./ent
	$(GO) run github.com/99designs/gqlgen generate --config gqlgen.yml
	$(GO) run ./graph/printschema -o schema.graphql

## migrate-diff: write the next PostgreSQL migration from the ent schema (NAME=snake_case)
migrate-diff:
	@test -n "$(NAME)" || (echo "usage: make migrate-diff NAME=add_something" >&2; exit 1)
	$(GO) run ./internal/database/migratediff -name $(NAME)

## check-generate: fail if generated code is not what `make generate` produces
check-generate: generate
	@git diff --exit-code --stat -- ent graph gqlgen.yml schema.graphql || \
		(echo "generated code is stale: run 'make generate' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- ent graph schema.graphql)" || \
		(git status --porcelain -- ent graph schema.graphql; echo "make generate created files: commit them" >&2; exit 1)

## clean: remove bin/ and the data/ of make run
clean:
	rm -rf $(BIN) data

## help: list the targets
help:
	@echo "usage: make TARGET"
	@awk '/^## [a-z][a-z-]*: / { sub(/^## /, ""); i = index($$0, ": "); \
		printf "  %-15s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2) }' $(MAKEFILE_LIST)
