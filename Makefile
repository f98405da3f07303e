# Linli — two commands on a fresh Debian machine with Go: `make run`, `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X linli/edge/agent.Version=$(VERSION) -X linli/hub/server.Version=$(VERSION)
APT_PKGS := mosquitto chromium fonts-wqy-microhei prometheus postgresql
AXE := shared/test/browser/axe

.PHONY: all build run hub-stop hub-start test check lint deps vet bench clean screenshots fuzz dist

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./hub/cmd/linli-hub ./edge/cmd/linli-edge

run: build
	@./configs/demo.sh

# While `make run` runs: stop only the hub (the kiosk and the gateway keep
# working offline), and start it again (they catch up).
hub-stop:
	@./configs/demo.sh hub-stop

hub-start:
	@./configs/demo.sh hub-start

# Static binaries of both programs for Raspberry Pi-class boards (64-bit
# and 32-bit ARMv7), no cgo: copy one directory to the board and run.
DIST := dist
dist:
	rm -rf $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/linux-arm64/ ./hub/cmd/linli-hub ./edge/cmd/linli-edge
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/linux-armv7/ ./hub/cmd/linli-hub ./edge/cmd/linli-edge
	@cd $(DIST) && sha256sum */linli-* > SHA256SUMS && ls -l */linli-*

# Install what tests need from Debian when it is missing (CI runs as root).
deps:
	@missing=""; \
	command -v /usr/sbin/mosquitto >/dev/null || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-wqy-microhei"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# axe-core for the browser tests' accessibility check, at the version
	@# package-lock.json pins (npm from Debian when the machine lacks it).
	@if [ ! -f $(AXE)/node_modules/axe-core/axe.min.js ]; then \
		if ! command -v npm >/dev/null; then \
			if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
			$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm >/dev/null; \
		fi; \
		npm ci --prefix $(AXE) --no-audit --no-fund --loglevel=error; \
	fi

vet:
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum not tidy: run go mod tidy"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# staticcheck at a pinned version, built from the module proxy by go run
# (cached after the first run), so every machine checks with the same rules
# and the project's go.mod stays as it is.
STATICCHECK_VERSION := v0.8.2
lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# The quick tier, in about a minute: vet, gofmt, tidy, staticcheck and the
# unit tests under -short without the race detector. Left out: the packages
# that build and run the real binaries or a browser (shared/test/e2e,
# shared/test/faults, shared/test/browser) and the kiosk's browser tests (every
# test in edge/kiosk/ui_browser_test.go, by name); `make test` runs them all.
CHECK_PKGS = $(shell $(GO) list ./... | grep -v -E '^linli/shared/test/(e2e|faults|faults/outage|browser)$$')
CHECK_SKIP = $(shell grep -o '^func Test[A-Za-z0-9_]*' edge/kiosk/ui_browser_test.go | cut -c6- | paste -sd'|')
check: vet lint
	$(GO) test -short -count=1 -timeout 5m -skip '^($(CHECK_SKIP))$$' $(CHECK_PKGS)

# -count=1: the process tests (shared/test/e2e, shared/test/faults) build and run the
# binaries themselves, which Go's test cache cannot see, so a cached pass
# could hide a change to the edge or the hub.
#
# Every package of ./..., the longest first: go test starts packages in
# the order it is given them, -p at a time; in module order the process
# tests started six minutes in and then ran on alone. -p 4 (not the
# cores' 2): the long packages start together and two slots stay for the
# short ones beside them. docs/testing.md has the measurements.
SLOW_PKGS := ./shared/test/faults/outage ./shared/test/e2e ./shared/test/faults ./hub/state ./hub/server \
	./edge/kiosk ./edge/replica ./hub/pgstore ./hub/lease ./edge/outbox ./hub/downlink ./shared/merge
TEST_PKGS = $(SLOW_PKGS) $(filter-out $(patsubst ./%,linli/%,$(SLOW_PKGS)),$(shell $(GO) list ./...))
test: deps vet lint
	$(GO) test -race -count=1 -timeout 9m -p 4 $(TEST_PKGS)
	@./.ci/fuzz 1s

# A PNG of each main kiosk screen (portrait and landscape) into
# edge/kiosk/screenshots/ and of the operator dashboard into
# hub/web/screenshots/, which README.md and docs/ show: real hub, kiosk and
# gateway binaries, headless Chromium. The CJK font from deps renders the
# Chinese text.
screenshots: deps
	LINLI_SCREENSHOTS=$(CURDIR)/edge/kiosk/screenshots $(GO) test -count=1 -run '^TestKioskScreenshots$$' ./shared/test/e2e
	LINLI_SCREENSHOTS_HUB=$(CURDIR)/hub/web/screenshots $(GO) test -count=1 -run '^TestDashboard$$' ./shared/test/e2e
	@ls edge/kiosk/screenshots/*.png hub/web/screenshots/*.png

# The benchmark harness (shared/bench): real binaries on loopback, each
# figure against a baseline measured in the same run; prints the table and
# writes shared/bench/results.md and the table between the markers in
# docs/performance.md. Not part of `make test`. bench-long: the
# 1,000,000-event backlog and longer steady loads, written to
# shared/bench/results-long.md.
.PHONY: bench-long
bench: deps build
	$(GO) build -o $(BIN)/ ./shared/bench/cmd/linli-bench
	$(BIN)/linli-bench --bin $(BIN) --readme docs/performance.md $(BENCHFLAGS)

bench-long: deps build
	$(GO) build -o $(BIN)/ ./shared/bench/cmd/linli-bench
	$(BIN)/linli-bench --bin $(BIN) --long --out shared/bench/results-long.md $(BENCHFLAGS)

# The district at full size: 5,000 simulated edges over 500 sites through
# Mosquitto to three hub workers on a PostgreSQL the harness starts
# (steady load, Mosquitto restart, one worker SIGKILLed, the killed one
# started again), written to shared/bench/results-district.md.
.PHONY: bench-district
bench-district: deps build
	$(GO) build -o $(BIN)/ ./shared/bench/cmd/linli-bench
	$(BIN)/linli-bench --bin $(BIN) --only fleet --fleet-hubs 3 --fleet-store pg --long --out shared/bench/results-district.md $(BENCHFLAGS)

# The fault suite in its long form (`make test` runs the short form): the
# edge SIGKILLed 300 times, 120 power cuts through a FUSE layer, the Nth
# write/fsync failing for N = 1..12, a full disk, a 1,000,000-event outage,
# 60 network cuts, broker and hub kills, clock jumps; every scenario checks
# exactly-once delivery of what was answered 2xx. Mounts FUSE and tmpfs:
# run as root. Each scenario prints a RESULT line with its figures.
.PHONY: faults
faults: deps
	LINLI_FAULTS=long $(GO) test -count=1 -timeout 90m -v ./shared/test/faults/...

# Every fuzz target for a minute each (FUZZTIME=5m make fuzz for longer).
FUZZTIME ?= 60s
fuzz:
	@./.ci/fuzz $(FUZZTIME)

clean:
	rm -rf $(BIN) dist
