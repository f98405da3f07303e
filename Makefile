# Linli — two commands on a fresh Debian machine with Go: `make run`, `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X linli/edge/agent.Version=$(VERSION) -X linli/hub/server.Version=$(VERSION)
APT_PKGS := mosquitto chromium

.PHONY: all build run test deps vet bench clean fuzz

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./hub/cmd/linli-hub ./edge/cmd/linli-edge

run: build
	@./configs/demo.sh

# Install what tests need from Debian when it is missing (CI runs as root).
deps:
	@missing=""; \
	command -v /usr/sbin/mosquitto >/dev/null || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

test: deps vet
	$(GO) test -race -timeout 9m ./...
	@./.ci/fuzz 2s

# Every fuzz target for a minute each (FUZZTIME=5m make fuzz for longer).
FUZZTIME ?= 60s
fuzz:
	@./.ci/fuzz $(FUZZTIME)

clean:
	rm -rf $(BIN) dist
