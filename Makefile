# AgentSigna — the two set-up commands are `make run` and `make test`.
#
# Go 1.26.8's standard library has advisories reachable from this code, so
# everything builds with go1.27.3, fetched by the go command on first use.
export GOTOOLCHAIN := go1.27.3
export GOFLAGS := -buildvcs=false

GO      ?= go
BIN     := bin/agentsigna
PKGS    := ./...

.PHONY: all build run test test-short bench bench-load lint vuln fuzz clean

all: lint test

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/agentsigna

# The service on the embedded SQLite store in ./agentsigna-data, seeded with
# the demo organization acme (credentials in agentsigna-data/demo/).
run: build
	./$(BIN) serve --demo --log-format text

# Every test, with the race detector. PostgreSQL tests use
# AGENTSIGNA_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# and skip when it is unreachable, unless AGENTSIGNA_TEST_POSTGRES=required.
# A process built with the race detector sleeps a second as it exits
# (atexit_sleep_ms), and the tests start hundreds: the CLI, serve, policy
# workers. GORACE set before it wins.
test:
	$(GO) vet $(PKGS)
	GORACE="atexit_sleep_ms=0 $$GORACE" $(GO) test -race -count=1 -timeout 9m $(PKGS)

test-short:
	$(GO) test -count=1 $(PKGS)

# Benchmarks beside the code (compare runs with benchstat), then the load
# comparison with opa run --server.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 -timeout 60m $(PKGS)
	$(MAKE) bench-load

# The allow path of POST /v1/decisions under load against `opa run --server`
# on the same policy and input (issue 5 item 8): embedded store, then
# PostgreSQL (skipped when AGENTSIGNA_TEST_DATABASE_URL is unreachable).
LOAD_CONCURRENCY ?= 32
LOAD_WARMUP      ?= 3s
LOAD_DURATION    ?= 20s
# The closed loops run in rounds whose order alternates (OPA, AgentSigna,
# AgentSigna, OPA, …), pooled per server, so that a machine whose speed
# drifts during the run drifts under both alike.
LOAD_ROUNDS      ?= 4

bench-load: build
	$(GO) run ./tests/load -agentsigna $(BIN) -concurrency $(LOAD_CONCURRENCY) -warmup $(LOAD_WARMUP) -duration $(LOAD_DURATION) -rounds $(LOAD_ROUNDS)
	$(GO) test -count=1 -v -timeout 15m -run '^TestLoadPostgres$$' ./tests/load -args \
		-load.agentsigna=$(BIN) -load.concurrency=$(LOAD_CONCURRENCY) -load.warmup=$(LOAD_WARMUP) -load.duration=$(LOAD_DURATION) \
		-load.rounds=$(LOAD_ROUNDS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Known vulnerabilities block the build: govulncheck against a pinned,
# locally built vulnerability database (no network beyond the module proxy).
vuln:
	bash scripts/vuln.sh

# Each fuzz target for FUZZTIME (seed corpora also run in make test).
FUZZTIME ?= 30s
FUZZ_TARGETS := ./server/strictjson:FuzzDecode ./bundles:FuzzRead ./internal/secrets:FuzzOpen \
	./ledger/verify:FuzzInclusion ./ledger/verify:FuzzConsistency ./ledger/verify:FuzzParseEntry \
	./ledger/verify:FuzzParseProof ./ledger/verify:FuzzParseTilePath ./ledger/verify:FuzzParseEntryBundle \
	./internal/signing:FuzzCanonicalMatchesJCS \
	./ledger/verify:FuzzEntryJCS ./internal/text:FuzzFold
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn in $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
	done

clean:
	rm -rf bin .bin
