# steward: one binary, build/steward, from core/ + bindings/ + the embedded scripts/.
#   make            build build/steward
#   make run        install missing packages, build, start the daemon (steward.lua)
#   make test       run the whole suite under prove
#   make test SANITIZE=1   the same, built with ASan + UBSan (objects in build/asan)
#   make bench      measure; prints a table
#   make bench-billing   the billing month (bench/billing.sh; BILLING_EVENTS=, default 10 M: hours)
#   make format / make lint

SANITIZE ?=
CC       ?= cc
PKGS     := luajit libuv libcurl libpq libssl libcrypto sqlite3 libedit yajl libzstd gmp

ifeq ($(SANITIZE),1)
CC       := clang
BUILD    ?= build/asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      := -O1 -g
else
BUILD    ?= build
SANFLAGS :=
OPT      := -O2 -g
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

# core/ in folders by part: http/ (server), store/ (store and libpq plumbing), repl/ (admin
# socket client and frames); the rest is the runtime itself.
CORE_INC := -Icore -Icore/http -Icore/store -Icore/repl

CFLAGS  ?= $(OPT)
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -fno-strict-aliasing -MMD -MP \
           $(CORE_INC) -Ibindings -I$(BUILD)/gen $(PKG_CFLAGS) $(SANFLAGS)
LDFLAGS += $(SANFLAGS) -rdynamic
# lua-cjson is linked statically (Debian ships no LuaJIT-loadable .so path we can rely on);
# http-parser has no pkg-config file.
# libpg_query (PostgreSQL's parser as a library, bindings/sqlparse.c): Debian's libpg-query-dev
# has no .pc file, so it is named here. The static archive is linked in (like lua-cjson), so the
# binary needs no libpg-query runtime package; it carries the protobuf-c runtime scan() uses.
LDLIBS  += -l:liblua5.1-cjson.a -lhttp_parser -l:libpg_query.a $(PKG_LIBS) -lm

CORE_SRC    := $(filter-out core/main.c,$(wildcard core/*.c core/*/*.c))
BIND_SRC    := $(wildcard bindings/*.c)
LUA_SRC     := $(shell find scripts -name '*.lua' | sort)
GEN_SRC     := $(BUILD)/gen/embedded_scripts.c
LIB_OBJ     := $(CORE_SRC:%.c=$(BUILD)/%.o) $(BIND_SRC:%.c=$(BUILD)/%.o) $(GEN_SRC:.c=.o)
MAIN_OBJ    := $(BUILD)/core/main.o
BIN         := $(BUILD)/steward

UNIT_SRC    := $(wildcard tests/unit/*_test.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

TESTS_LUA   := $(sort $(wildcard tests/lua/*_spec.lua))
TESTS_SH    := $(sort $(wildcard tests/e2e/*.t))
PROVE       ?= prove
# One test file per core at a time: most of a test's time is a daemon or a peer starting and
# answering, so the suite takes half as long on two cores (every test picks its own ports and
# directories). PROVE_FLAGS= runs it serially.
PROVE_FLAGS ?= -j$(shell nproc 2>/dev/null || echo 1)

.PHONY: all run test unit bench bench-billing format lint clean fuzz
all: $(BIN)

# V=1 shows the full commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(BIN): $(LIB_OBJ) $(MAIN_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(GEN_SRC): $(LUA_SRC) core/embed.sh
	@mkdir -p $(dir $@)
	sh core/embed.sh $(LUA_SRC) > $@.tmp && mv $@.tmp $@

$(GEN_SRC:.c=.o): $(GEN_SRC)
	$(Q)$(CC) $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

unit: $(UNIT_BIN)

# deps/install first (a no-op when nothing is missing), then a fresh make: the pkg-config
# flags are read when make starts, so the build must start after the packages exist.
run:
	@sh deps/install
	@$(MAKE) --no-print-directory all
	exec $(BIN) run

# Every test program speaks TAP; tests/run picks how to start each kind of file.
test: $(BIN) $(UNIT_BIN)
	STEWARD_BIN=$(abspath $(BIN)) STEWARD_LUA_PATH=$(abspath scripts) \
	    $(PROVE) --exec 'sh tests/run' $(PROVE_FLAGS) $(UNIT_BIN) $(TESTS_LUA) $(TESTS_SH)

bench: $(BIN)
	STEWARD_ALLOW_ROOT=true STEWARD_BIN=$(abspath $(BIN)) sh bench/run

# Not part of bench: a month of 10 M usage events takes hours on 2 cores (docs/performance.md).
bench-billing: $(BIN)
	STEWARD_ALLOW_ROOT=true STEWARD_BIN=$(abspath $(BIN)) flock /tmp/steward-bench.lock sh bench/billing.sh $(BILLING_STORES)

format:
	clang-format -i core/*.c core/*.h core/*/*.c core/*/*.h bindings/*.c bindings/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c

lint: $(GEN_SRC)
	clang-tidy --quiet $(CORE_SRC) core/main.c $(BIND_SRC) -- $(filter-out -MMD -MP,$(CFLAGS))
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr --suppress=missingIncludeSystem $(CORE_INC) -Ibindings core bindings

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# libFuzzer target for the HTTP server's connection state machine and router
# (tests/fuzz/http_fuzz.c), built with the core files it needs under the same sanitizers,
# run bounded on the committed seed corpus: make fuzz [FUZZ_SECONDS=30]
FUZZ_SECONDS ?= 30
FUZZ_DIR     := build/fuzz
FUZZ_SRC     := tests/fuzz/http_fuzz.c core/http/http_message.c core/http/http_parse.c core/http/http_conn.c \
                core/http/http_listener.c core/http/http_router.c
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror $(CORE_INC) \
                -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
                $(shell pkg-config --cflags libuv)
.PHONY: fuzz
$(FUZZ_DIR)/http_fuzz: $(FUZZ_SRC) core/http/http_server.h core/http/http_router.h
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) -o $@ $(FUZZ_SRC) -lhttp_parser $(shell pkg-config --libs libuv)

# steward.json (bindings/json.c over lua-cjson): decode, encode, decode again.
$(FUZZ_DIR)/json_fuzz: tests/fuzz/json_fuzz.c bindings/json.c bindings/json_scan.c bindings/json_scan.h
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) -Ibindings $(shell pkg-config --cflags luajit) -o $@ $(filter %.c,$^) \
	    -l:liblua5.1-cjson.a $(shell pkg-config --libs luajit) -lm

# POST /v1/events' C path (bindings/ingest.c over yajl): any body, then results.
$(FUZZ_DIR)/ingest_fuzz: tests/fuzz/ingest_fuzz.c bindings/ingest.c bindings/ingest.h bindings/json_scan.c \
                         bindings/json_scan.h core/store/store.c core/store/store.h
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) -Ibindings -o $@ $(filter %.c,$^) $(shell pkg-config --libs yajl) -lm

# The admin socket's frame decoder (core/repl/frame.c), fed in input-driven chunks.
$(FUZZ_DIR)/frame_fuzz: tests/fuzz/frame_fuzz.c core/repl/frame.c core/repl/frame.h
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/frame_fuzz.c core/repl/frame.c

# steward.sqlparse (bindings/sqlparse.c over libpg_query, decoded by bindings/json.c): any bytes,
# on the synchronous path (no task runs); the task API is linked for its task_current().
$(FUZZ_DIR)/sqlparse_fuzz: tests/fuzz/sqlparse_fuzz.c bindings/sqlparse.c bindings/json.c bindings/json_scan.c \
                           bindings/json_scan.h core/task.c core/task_lua.c core/log.c core/duration.c
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) -Ibindings $(shell pkg-config --cflags luajit) -o $@ $(filter %.c,$^) \
	    -l:libpg_query.a -l:liblua5.1-cjson.a $(shell pkg-config --libs luajit libuv yajl) -lm

# steward.compress's reader (bindings/compress.c over libzstd): any bytes as an archive file, on
# the synchronous path; the task API is linked for its task_current().
$(FUZZ_DIR)/compress_fuzz: tests/fuzz/compress_fuzz.c bindings/compress.c core/task.c core/task_lua.c core/log.c \
                           core/duration.c
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) -Ibindings $(shell pkg-config --cflags luajit) -o $@ $(filter %.c,$^) \
	    $(shell pkg-config --libs luajit libuv libzstd libcrypto) -lm

# steward.decimal's parser, printer and rounding (bindings/decimal_text.c, decimal_round.c over
# GMP): any bytes as a decimal string, printed back and rounded.
$(FUZZ_DIR)/decimal_fuzz: tests/fuzz/decimal_fuzz.c bindings/decimal_text.c bindings/decimal_round.c \
                          bindings/decimal.h
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) -Ibindings -o $@ $(filter %.c,$^) $(shell pkg-config --libs gmp)

# Each target gets FUZZ_SECONDS. LuaJIT's heap is not scanned by LeakSanitizer, so the
# JSON target runs without leak detection (cjson's buffers live in Lua userdata).
fuzz: $(FUZZ_DIR)/http_fuzz $(FUZZ_DIR)/json_fuzz $(FUZZ_DIR)/frame_fuzz $(FUZZ_DIR)/ingest_fuzz \
      $(FUZZ_DIR)/sqlparse_fuzz $(FUZZ_DIR)/compress_fuzz $(FUZZ_DIR)/decimal_fuzz
	@mkdir -p $(FUZZ_DIR)/corpus-http $(FUZZ_DIR)/corpus-json $(FUZZ_DIR)/corpus-frame $(FUZZ_DIR)/corpus-ingest \
	    $(FUZZ_DIR)/corpus-sqlparse $(FUZZ_DIR)/corpus-compress $(FUZZ_DIR)/corpus-decimal
	$(FUZZ_DIR)/http_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    $(FUZZ_DIR)/corpus-http tests/fuzz/corpus/http
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_DIR)/json_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=2048 \
	    $(FUZZ_DIR)/corpus-json tests/fuzz/corpus/json
	$(FUZZ_DIR)/frame_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    $(FUZZ_DIR)/corpus-frame tests/fuzz/corpus/frame
	$(FUZZ_DIR)/ingest_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    $(FUZZ_DIR)/corpus-ingest tests/fuzz/corpus/ingest
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_DIR)/sqlparse_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=2048 \
	    $(FUZZ_DIR)/corpus-sqlparse tests/fuzz/corpus/sqlparse
	$(FUZZ_DIR)/compress_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    $(FUZZ_DIR)/corpus-compress tests/fuzz/corpus/compress
	$(FUZZ_DIR)/decimal_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=8300 \
	    $(FUZZ_DIR)/corpus-decimal tests/fuzz/corpus/decimal
