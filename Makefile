# The two commands that matter: `make run` and `make test`.
CONFIG ?= fixtures/hotdesk.toml

.PHONY: run build test test-deps browser-deps screenshot lint fmt bench bench-login fuzz clean dist

# Seconds each fuzz target runs for `make fuzz`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = user_agent query config directory voicemail xml_writer

run: build
	@echo "Entry URL for phones: http://127.0.0.1:8080/app"
	@echo "Try it: curl -A 'Aastra6737i MAC:00-08-5D-30-A6-CE V:3.2.2.6038-SIP' http://127.0.0.1:8080/app"
	./target/release/hotdesk serve --config $(CONFIG)

build:
	cargo build --release --locked

test: test-deps browser-deps
	cargo build --locked --all-targets
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --locked --no-fail-fast; \
	else \
		cargo test --locked --no-fail-fast; \
	fi

# Command-line tools tests call: xmllint (schema checks of vendor XML and Linphone's
# lpconfig) and zbarimg (decodes activation QR codes). Installed when we are root with apt-get.
test-deps:
	@missing=""; \
	command -v xmllint >/dev/null 2>&1 || missing="$$missing libxml2-utils"; \
	command -v zbarimg >/dev/null 2>&1 || missing="$$missing zbar-tools"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing$$missing for the tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "The tests need$$missing. Install with:" >&2; \
			echo "sudo apt-get install -y$$missing" >&2; \
			exit 1; \
		fi; \
	fi

# tests/browser.rs drives Debian's Chromium through chromedriver: installed here when we are
# root with apt-get, otherwise we stop and say how.
CHROMEDRIVER ?= /usr/bin/chromedriver
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x "$(CHROMEDRIVER)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing chromium and chromium-driver for the browser tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else \
			echo "The browser tests need Chromium and its driver. Install them with:" >&2; \
			echo "sudo apt-get install -y chromium chromium-driver" >&2; \
			exit 1; \
		fi; \
	fi

# The README's console picture (docs/console.png), taken by a browser test.
SCREENSHOTS = $${CARGO_TARGET_DIR:-target}/screenshots
screenshot: browser-deps
	cargo test --locked --test browser console_screenshot_for_the_readme
	cp "$(SCREENSHOTS)/readme-console.png" docs/console.png
	@if command -v optipng >/dev/null 2>&1; then optipng -quiet -o2 docs/console.png; fi
	@ls -l docs/console.png

# A stripped, static (musl) release binary and its sha256 in dist/. Needs the musl target
# (`rustup target add x86_64-unknown-linux-musl`) and musl-gcc (Debian: musl-tools) for the
# C parts (ring, the bundled SQLite). DIST_TARGET=x86_64-unknown-linux-gnu builds for glibc.
DIST_TARGET ?= x86_64-unknown-linux-musl
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DIST_BIN = dist/hotdesk-$(VERSION)-$(DIST_TARGET)

dist:
	cargo build --locked --profile dist --target $(DIST_TARGET) --bin hotdesk
	mkdir -p dist
	cp "$${CARGO_TARGET_DIR:-target}/$(DIST_TARGET)/dist/hotdesk" $(DIST_BIN)
	cd dist && sha256sum $(notdir $(DIST_BIN)) > $(notdir $(DIST_BIN)).sha256
	@ls -l $(DIST_BIN) && cat $(DIST_BIN).sha256

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

# hotdesk against its anchors in one run (bench/run.sh): pages vs nginx serving the same bytes
# and a bare hyper server, each on one pinned core with the access log on; a 10,000-phone boot
# storm; logins at 1/16/64 at once; memory per idle connection and after they close. Installs
# nginx-light and wrk from Debian when missing (as root). Knobs: see the top of bench/run.sh
# (BENCH_AFTER=10 for a quicker run). Not part of `make test`.
bench:
	bash bench/run.sh

# The in-process login benchmark: a 50 ms upstream with the cache cold and warm, failed-login
# memory, a phone beside a host holding 1,100 sockets.
bench-login:
	cargo bench --locked --bench login

# cargo-fuzz on stable: -s none (coverage only; the code is safe Rust, no ASan needed).
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		echo "== $$t ($(FUZZ_SECONDS)s)"; \
		cargo fuzz run -s none $$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096 || exit 1; \
	done

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf var
