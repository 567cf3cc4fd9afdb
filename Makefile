# sekisho - the two commands of the README, and a few conveniences.
#   make run     install what is missing, build, run the main job
#   make check   install what is missing, build, run every test (also under ASan+UBSan)
BUILD   ?= build
ASAN    ?= build-asan
MESON_WERROR = -Dwerror=true


.PHONY: all deps deps-check build run samples check test test-asan fuzz bench bench-ledger clean

all: build

deps:
	@scripts/deps.sh build

deps-check:
	@scripts/deps.sh check

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_WERROR)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The main job: the gateway. A private Postfix on 127.0.0.1:2525 passes every
# mail through sekisho-milter into var/maildir/ (state and quarantine under
# var/); in the foreground until Ctrl-C. See scripts/run-gateway.sh.
run: build
	@scripts/run-gateway.sh $(BUILD)

# The sample job: sanitize the bundled sample mails into out/ (quarantine under var/).
samples: build
	@scripts/run-samples.sh $(BUILD)

$(ASAN)/build.ninja:
	CC=clang meson setup $(ASAN) $(MESON_WERROR) -Db_sanitize=address,undefined \
	    -Db_lundef=false -Dbuildtype=debug -Dfuzzing=true

test: build
	meson test -C $(BUILD) --print-errorlogs

test-asan: deps-check $(ASAN)/build.ninja
	ninja -C $(ASAN)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
	    meson test -C $(ASAN) --print-errorlogs

# Both builds run to the end even when one fails; the last line counts all tests.
check: deps-check build
	@rc=0; \
	meson test -C $(BUILD) --print-errorlogs || rc=1; \
	$(MAKE) --no-print-directory test-asan || rc=1; \
	scripts/test-summary.py $(BUILD) $(ASAN) || rc=1; \
	exit $$rc

# A longer fuzz run of every target over a scratch copy of its corpus;
# findings land in fuzz/artifacts/ (add them to fuzz/corpus/<target>/).
FUZZ_SECONDS ?= 600
fuzz: deps-check $(ASAN)/build.ninja
	ninja -C $(ASAN)
	for t in sanitize mimehdr charset htmltext policy b64 ledger; do \
	    fuzz/run-fuzz.sh $(ASAN)/fuzz/fuzz_$$t fuzz/corpus/$$t $(FUZZ_SECONDS) || exit 1; \
	done

# Benchmark against the reference pipeline; results go to docs/PERFORMANCE.md by hand.
bench: build
	@scripts/deps-bench.sh
	bench/run.sh $(BUILD)

# The ledger against SQLite (WAL, synchronous=FULL) on the same records.
bench-ledger: build
	/usr/bin/python3 bench/ledger.py $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN) out var

# A private Postfix on 127.0.0.1:2525 delivering every mail into var/maildir/
# (config, queue and log under var/postfix/; never the system Postfix).
# MILTER=inet:127.0.0.1:PORT adds a milter. See scripts/postfix-private.sh --help.
.PHONY: postfix-start postfix-stop
postfix-start: deps
	@scripts/postfix-private.sh start

postfix-stop:
	@scripts/postfix-private.sh stop
