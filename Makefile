# Makefile for s3jobfs - hand-written, pkg-config for every library.
#
#   make            build ./s3jobfs
#   make test       the whole suite: unit tests, unit tests under ASan+UBSan and under valgrind,
#                   integration tests
#                   against local S3 servers and a throwaway PostgreSQL (what .ci/run calls)
#   make unit       unit tests only;  make integration   integration tests only
#   make SANITIZE=address,undefined   a sanitizer build (objects go to build-san/)
#   make lint       banned calls, cppcheck
#   make fuzz       build the libFuzzer targets (clang) and run each for FUZZ_SECONDS (default 60)
#   make valgrind   every unit test binary under valgrind (leaks and memory errors fail it)
#   make install    PREFIX=/usr/local DESTDIR=

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
PKGS    := fuse3 libcurl openssl libpq libcjson libxml-2.0

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD   ?= build
OPT     ?= -O2
else
BUILD   ?= build-san
OPT     ?= -O1
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat-security
CFLAGS  ?= -g $(OPT)
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(WARN) $(CFLAGS) $(SANFLAGS) \
	-Iinclude $(shell pkg-config --cflags $(PKGS))
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS)
LIBS    := $(shell pkg-config --libs $(PKGS)) -lpthread -lm

LIB_SRCS  := $(wildcard common/*.c s3/*.c cache/*.c meta/*.c fs/*.c) $(filter-out cli/main.c,$(wildcard cli/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
ITEST_SRCS := $(wildcard tests/integration/t_*.c)
ITEST_BINS := $(ITEST_SRCS:tests/integration/%.c=$(BUILD)/tests/%)
LIBA      := $(BUILD)/libs3jobfs.a

.PHONY: all test test-run unit unit-bins integration integration-bins unit-san clean install lint deps demo \
	man fuzz fuzz-bins valgrind bench
all: s3jobfs

$(BUILD)/%.o: %.c $(wildcard include/*.h */*_i.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBA): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

s3jobfs: $(BUILD)/cli/main.o $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/s3jobfs: $(BUILD)/cli/main.o $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/tests/harness.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -I. $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/t_%: tests/integration/t_%.c $(BUILD)/tests/harness.o $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -I. $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/harness.o: tests/harness.c tests/harness.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -I. -c -o $@ $<

unit-bins: $(UNIT_BINS)
integration-bins: $(ITEST_BINS) $(BUILD)/s3jobfs s3jobfs

# Each target below ends with tests/run.sh's line "N passed, N failed".
unit: $(UNIT_BINS)
	@tests/run.sh $(UNIT_BINS)

# Every unit test binary under valgrind (-q: only errors print; --error-exitcode fails the test).
valgrind: $(UNIT_BINS)
	@tests/run.sh $(UNIT_BINS:%=valgrind:%)

unit-san:
	@$(MAKE) --no-print-directory SANITIZE=address,undefined unit-bins
	@tests/run.sh $(UNIT_SRCS:tests/unit/%.c=build-san/tests/%)

integration: $(ITEST_BINS) s3jobfs
	@tests/with-env.sh -- tests/run.sh $(ITEST_BINS) $(sort $(wildcard tests/integration/t_*.sh tests/integration/t_*.py))

# `make test` installs what it needs first (idempotent), then builds and runs everything.
test:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory test-run

test-run: $(UNIT_BINS) $(ITEST_BINS) s3jobfs
	@$(MAKE) --no-print-directory SANITIZE=address,undefined unit-bins >/dev/null
	@tests/with-env.sh -- tests/run.sh $(UNIT_BINS) \
		$(UNIT_SRCS:tests/unit/%.c=build-san/tests/%) $(UNIT_BINS:%=valgrind:%) \
		$(ITEST_BINS) $(sort $(wildcard tests/integration/t_*.sh tests/integration/t_*.py))

deps:
	scripts/deps.sh

# `make demo`: local S3 + PostgreSQL, a sample job written through the mount, its status.
demo:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory s3jobfs
	@tests/with-env.sh --no-swift -- scripts/demo.sh

# `make bench`: s3jobfs against s3fs, rclone mount and upload-after-job (bench/bench.py; takes
# about 25 min; BENCH_QUICK=1 tries the harness in a few). Not part of `make test`.
bench:
	@bench/run.sh

lint:
	@! git grep -nE '\b(sprintf|strcpy|strcat|strtok|atoi|gets)\s*\(' -- '*.c' '*.h' || \
		{ echo "lint: banned calls above (see STYLE)"; false; }
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --std=c11 \
		--suppress=missingIncludeSystem --suppress=unknownMacro -Iinclude common s3 cache meta fs cli

# Fuzzing (not part of `make test`): the library is rebuilt with clang into build-fuzz/ with
# coverage instrumentation; each fuzz/fuzz_X.c links with libFuzzer and starts from
# fuzz/corpus/X/ (new inputs go to build-fuzz/corpus/X/, crashes to build-fuzz/crash/X/), with
# the dictionary fuzz/X.dict when there is one.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_TARGETS:%=build-fuzz/fuzz/fuzz_%)

fuzz-bins:
	@command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install clang)"; false; }
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz OPT=-O1 \
		SANFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_FLAGS)" $(FUZZ_BINS)

build-fuzz/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Is3 -Ifuzz -fsanitize=fuzzer -o $@ $< $(LIBA) $(LIBS)

fuzz: fuzz-bins
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build-fuzz/corpus/$$t build-fuzz/crash/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		dict=; [ -f fuzz/$$t.dict ] && dict=-dict=fuzz/$$t.dict; \
		build-fuzz/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$dict \
			-artifact_prefix=build-fuzz/crash/$$t/ build-fuzz/corpus/$$t fuzz/corpus/$$t \
			2>build-fuzz/$$t.log || { tail -n 60 build-fuzz/$$t.log; exit 1; }; \
		grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' build-fuzz/$$t.log; \
	done


# the mount(8) helper (mount -t fuse.s3jobfs, fstab), the man page and the systemd unit too
SBINDIR ?= /sbin
UNITDIR ?= /etc/systemd/system
MANDIR  ?= $(PREFIX)/share/man
install: s3jobfs
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(UNITDIR)
	install -m 0755 s3jobfs $(DESTDIR)$(PREFIX)/bin/s3jobfs
	sed 's|^bin=$${S3JOBFS_BIN:-}$$|bin=$${S3JOBFS_BIN:-$(PREFIX)/bin/s3jobfs}|' scripts/mount.s3jobfs \
		> $(DESTDIR)$(SBINDIR)/mount.s3jobfs
	chmod 0755 $(DESTDIR)$(SBINDIR)/mount.s3jobfs
	ln -sf mount.s3jobfs $(DESTDIR)$(SBINDIR)/mount.fuse.s3jobfs
	install -m 0644 docs/s3jobfs.1 $(DESTDIR)$(MANDIR)/man1/s3jobfs.1
	sed 's|/usr/local/bin/s3jobfs|$(PREFIX)/bin/s3jobfs|' scripts/s3jobfs.service \
		> $(DESTDIR)$(UNITDIR)/s3jobfs.service

# the man page: its ENVIRONMENT section comes from `s3jobfs check --print-config`
man: s3jobfs
	scripts/gen-man.sh ./s3jobfs > docs/s3jobfs.1

clean:
	rm -rf build build-san build-fuzz s3jobfs
