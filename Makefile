# Portico: one non-recursive Makefile. `make` builds build/portico and
# build/gwctl; `make run` starts the demo; `make test` runs every test.

CC      ?= cc
PKGS    := openssl libconfig msgpack lmdb libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ifneq ($(CI),)
WARN    += -Werror
endif
OPT     ?= -O2 -g
CFLAGS  ?=
CFLAGS  += -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -I. $(PKG_CFLAGS) $(SAN)
LDFLAGS += $(SAN)
LDLIBS  += $(PKG_LIBS)
B       := build

LIB_SRC := $(filter-out master/main.c,$(wildcard master/*.c worker/*.c shm/*.c policies/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
UNIT_SRC := $(wildcard test/unit/*/test_*.c)
UNIT_BIN := $(UNIT_SRC:test/unit/%.c=$(B)/test/unit/%)

.PHONY: all deps run test unit integration bench bench-instr bench-syscalls check-asan fuzz \
	clean keys check-layers tls-audit
all: $(B)/portico $(B)/gwctl $(B)/demo

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/libportico.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/portico: $(B)/obj/master/main.o $(B)/libportico.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/gwctl: $(B)/obj/tools/gwctl.o $(B)/obj/tools/gwctl_key.o \
	    $(B)/obj/tools/gwctl_token.o $(B)/obj/tools/gwctl_stats.o \
	    $(B)/obj/tools/gwctl_breakers.o \
	    $(B)/libportico.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/demo: $(B)/obj/tools/demo.o $(B)/obj/tools/demo_http.o
	$(CC) $(LDFLAGS) -o $@ $^

# The TLS bench's load generator (tools/bench/tls.sh), and the library
# bench-rss preloads to count OpenSSL's own heap (tools/bench/osslmem.c).
$(B)/tlsload: $(B)/obj/tools/bench/tlsload.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lpthread

$(B)/osslmem.so: tools/bench/osslmem.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $< $(LDFLAGS) -lcrypto -lpthread

$(B)/test/unit/%: test/unit/%.c $(B)/libportico.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< $(B)/libportico.a \
		$(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cmocka)

deps:
	@bash tools/deps.sh

keys:
	@bash etc/gen-keys.sh

run: deps
	@$(MAKE) --no-print-directory all
	@bash etc/gen-keys.sh
	@bash tools/run-demo.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done
	@echo "== test/tools"
	@/usr/bin/python3 -m pytest -q -p no:cacheprovider test/tools
	@echo "== check-layers"
	@/usr/bin/python3 tools/check-layers.py

# The #include lines against the layers (README.md, "Design").
check-layers:
	@/usr/bin/python3 tools/check-layers.py

integration: all
	@bash etc/gen-keys.sh
	cd test/integration && /usr/bin/python3 -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) .

test: deps
	@$(MAKE) --no-print-directory all
	@bash etc/gen-keys.sh
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

check-asan:
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" all unit
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" integration \
		PORTICO_BUILD=$(CURDIR)/build-asan

fuzz:
	@bash test/fuzz/run.sh

# Each comparison twice: on the shared machine (load generator, origin and
# front on the same two cores), then in capacity mode (each front held to
# half a core, so req/s measure the front; README, Performance).
bench: deps all $(B)/tlsload $(B)/osslmem.so
	@bash tools/bench.sh
	@FRONT_CPU=0.5 SCENARIOS="small gateway" bash tools/bench.sh
	@bash tools/bench/tls.sh
	@FRONT_CPU=0.5 bash tools/bench/tls.sh
	@bash tools/bench-aggregate.sh
	@bash tools/bench-rss.sh
	@bash tools/bench-cache-rss.sh

bench-instr: deps all
	@bash tools/bench-instr.sh

bench-syscalls: deps all
	@bash tools/bench-syscalls.sh

# testssl.sh against a portico TLS port with the demo certificate; fails
# on a finding rated HIGH or CRITICAL. Not part of `make test`.
tls-audit: deps all
	@bash tools/tls-audit.sh

clean:
	rm -rf build build-asan

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
