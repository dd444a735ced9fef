# The index of how to work on Hearth. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: guest ## build bin/hearth, embedding the agents that make guest built
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/hearth ./app/cmd/hearth

.PHONY: run
run: build ## run the manager on SQLite in ./data at http://127.0.0.1:8080
	./bin/hearth serve

# The agent ships without inlining (-gcflags=all=-l): 7% smaller, no measurable cost in
# make bench-agent (the scrape serves a ready snapshot).
AGENT_FLAGS := -trimpath -gcflags=all=-l -ldflags "$(LDFLAGS)"
GUEST_ARCHES := amd64 arm64

.PHONY: guest
guest: ## build the guest agent: bin/hearth-agent-linux-{amd64,arm64}, static
	@for arch in $(GUEST_ARCHES); do \
	  echo "hearth-agent linux/$$arch"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build $(AGENT_FLAGS) -o bin/hearth-agent-linux-$$arch ./guest/cmd/hearth-agent || exit 1; \
	  cmp -s bin/hearth-agent-linux-$$arch provision/agents/hearth-agent-linux-$$arch || \
	    cp bin/hearth-agent-linux-$$arch provision/agents/hearth-agent-linux-$$arch; \
	done

.PHONY: bench-agent
bench-agent: guest ## hearth-agent vs Debian's node_exporter: size, RSS, scrape latency, CPU
	HEARTH_AGENT_BIN=$(CURDIR)/bin/hearth-agent-linux-amd64 $(GO) test -run '^$$' -bench AgentVsNodeExporter -benchtime 1x ./e2e/benchagent/

HEARTH_E2E_CACHE ?= /var/cache/hearth-e2e
export HEARTH_E2E_CACHE

.PHONY: test-kernel
test-kernel: ## fetch Debian's cloud kernel for the real-guest tests into HEARTH_E2E_CACHE
	@set -e; dir=$(HEARTH_E2E_CACHE)/kernel; \
	if ls $$dir/root/boot/vmlinuz-* >/dev/null 2>&1; then echo "kernel cached in $$dir"; exit 0; fi; \
	mkdir -p $$dir && cd $$dir && \
	pkg=$$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $$2; exit}'); \
	if [ -z "$$pkg" ]; then apt-get update -q >/dev/null; pkg=$$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $$2; exit}'); fi; \
	apt-get download $$pkg && dpkg-deb -x $$pkg_*.deb root && rm -f $$pkg_*.deb && ls root/boot/vmlinuz-*

.PHONY: bench-collector
bench-collector: ## the collector polling 1,000 and 10,000 VMs (real agent handlers), SQLite and PostgreSQL: round p99, CPU, RSS
	$(GO) test -run '^$$' -bench '^BenchmarkCollector$$' -benchtime 1x -timeout 60m ./e2e/benchcollector/

.PHONY: bench-list
bench-list: guest ## the VM list (partial, page, API) over 10,000 records on SQLite and PostgreSQL; seed render time, data dir per VM
	$(GO) test -run '^$$' -bench '^BenchmarkList$$' -benchtime 1x -timeout 30m ./e2e/benchcollector/

.PHONY: e2e
e2e: build test-kernel ## real Debian guests with cloud-init under QEMU (root, netns, /dev/net/tun; minutes)
	HEARTH_E2E=1 HEARTH_BIN=$(CURDIR)/bin/hearth $(GO) test -count=1 -v -timeout 40m -run 'Guest$$' ./e2e/realguest/

.PHONY: test
test: guest ## run every test (PostgreSQL, Chromium used when present; HEARTH_REQUIRE_ALL=1 makes them mandatory)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./... # app/cmd/hearth alone takes 7-10 min under -race on 2 cores

.PHONY: test-short
test-short: guest ## unit tests only, no race detector: the quick loop
	$(GO) test -count=1 -timeout 30m ./...

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 20s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-20s} $$pkg || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## run the benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: generate
generate: ## regenerate templ components (views/**/*_templ.go)
	$(GO) tool templ generate

node_modules: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

.PHONY: css
css: node_modules ## rebuild static/css/app.css with the Tailwind CLI
	npx tailwindcss -i static/src/app.css -o static/css/app.css --minify

.PHONY: htmx
htmx: node_modules ## vendor htmx from node_modules into static/js
	cp node_modules/htmx.org/dist/htmx.min.js static/js/htmx.min.js

.PHONY: xterm
xterm: node_modules ## vendor xterm.js and its fit addon from node_modules into static/
	sed '/^\/\/# sourceMappingURL=/d' node_modules/@xterm/xterm/lib/xterm.js > static/js/xterm.js
	sed '/^\/\/# sourceMappingURL=/d' node_modules/@xterm/addon-fit/lib/addon-fit.js > static/js/addon-fit.js
	cp node_modules/@xterm/xterm/css/xterm.css static/css/xterm.css

.PHONY: check-generated
check-generated: generate css htmx xterm ## fail if committed generated files (templ, CSS, htmx) are stale
	@git diff --exit-code --stat -- views static || { echo "generated files are stale: run make generate css htmx xterm and commit"; exit 1; }

.PHONY: lint
lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# forbid: no package of $(1) may import, directly or not, a hearth package matching the
# regexp $(2); $(3) says which rule of docs/architecture.md that is.
define forbid
	@bad=$$($(GO) list -deps $(1) | grep -E '^hearth/($(2))(/|$$)' | sort -u | tr '\n' ' '); \
	  if [ -n "$$bad" ]; then echo "check-deps: $(3): $(1) imports $$bad"; exit 1; fi
endef

# forbid_direct: as forbid, for what $(1) imports itself (what it reaches through the
# packages it may import is theirs to answer for).
define forbid_direct
	@bad=$$($(GO) list -f '{{join .Imports "\n"}}' $(1) | grep -E '^hearth/($(2))(/|$$)' | sort -u | tr '\n' ' '); \
	  if [ -n "$$bad" ]; then echo "check-deps: $(3): $(1) imports $$bad"; exit 1; fi
endef

USECASES := app/vm|app/auth|app/metrics|app/install|app/image|app/node

.PHONY: check-deps
check-deps: ## enforce the dependency direction of docs/architecture.md
	$(call forbid,./app,app/.+|views|provision|guest|migrations|static,the domain (app) depends on nothing of ours)
	$(call forbid,./guest/...,app|views|provision,the agent imports nothing of the manager)
	@bad=$$($(GO) list -deps ./guest/api | grep -v -E '^[a-z]+(/[a-z0-9]+)*$$' | grep -v '^hearth/guest/api$$'); \
	  if [ -n "$$bad" ]; then echo "check-deps: guest/api depends on the standard library only, not $$bad"; exit 1; fi
	$(call forbid,./views/...,app|provision|guest|migrations,views render view models and know nothing of the manager)
	@bad=$$($(GO) list -deps ./views/... | grep -E '^github.com/labstack/echo'); \
	  if [ -n "$$bad" ]; then echo "check-deps: views must not import echo: $$bad"; exit 1; fi
	$(call forbid,./app/store/...,$(USECASES)|app/web|app/cmd|app/hypervisor|app/agent|provision|views,the store imports no use case)
	$(call forbid,./app/vm,app/node|app/auth|app/metrics|app/install|app/image|app/web|app/cmd|provision|views,a use case imports no other use case)
	$(call forbid,./app/auth,app/node|app/vm|app/metrics|app/install|app/image|app/web|app/cmd|app/hypervisor|provision|views,a use case imports no other use case)
	$(call forbid,./app/metrics,app/node|app/vm|app/auth|app/install|app/image|app/web|app/cmd|provision|views,a use case imports no other use case)
	$(call forbid,./app/install,app/node|app/vm|app/auth|app/metrics|app/image|app/web|app/cmd|app/hypervisor|views,a use case imports no other use case)
	$(call forbid,./app/image,app/node|app/vm|app/auth|app/metrics|app/install|app/web|app/cmd|app/hypervisor|views,a use case imports no other use case)
	$(call forbid,./app/node,app/vm|app/auth|app/metrics|app/install|app/image|app/web|app/cmd|app/hypervisor|provision|views,a use case imports no other use case)
	$(call forbid,./app/hypervisor/...,$(USECASES)|app/store|app/web|app/cmd|app/agent|provision|views,drivers know nothing of use cases or the store)
	$(call forbid,./app/console,app$$|app/(vm|auth|metrics|install|image|web|cmd|store|hypervisor|agent|config)|views|provision|guest|migrations|static,the console hub imports nothing of ours)
	$(call forbid,./app/agent,$(USECASES)|app/store|app/web|app/cmd|app/hypervisor|provision|views,the agent client knows only the domain and guest/api)
	$(call forbid,./provision/...,$(USECASES)|app/store|app/web|app/cmd|app/hypervisor|app/agent|app/config|views,provision is a toolbox: the domain at most)
	$(call forbid_direct,./app/web,app/store|app/hypervisor|app/install|app/agent|provision|app/cmd|migrations,the web edge reaches use cases only)
	@bad=$$($(GO) list -deps $$($(GO) list ./... | grep -v '^hearth/internal/testkit') | grep '^hearth/internal/testkit'); \
	  if [ -n "$$bad" ]; then echo "check-deps: only tests import internal/testkit: $$bad"; exit 1; fi
	@bad=$$($(GO) list -f '{{.ImportPath}} {{join .Imports " "}}' ./... | grep -v '^hearth/internal/testkit' | grep -w testing | cut -d' ' -f1); \
	  if [ -n "$$bad" ]; then echo "check-deps: product packages must not import testing: $$bad"; exit 1; fi
	@echo "dependency direction ok"

.PHONY: clean
clean: ## remove build output (not ./data)
	rm -rf bin
