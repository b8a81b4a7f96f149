# bioxen_vm: build, C tests, examples and installation.
#
#   make build           cargo build --release (PROFILE=debug for a debug build)
#   make example         build, then compile and run examples/c/quickstart.c
#   make test-c          build the C tests and examples, run each as is and under valgrind
#   make install         install the libraries, the header and bioxen_vm.pc under
#                        $(DESTDIR)$(PREFIX) (PREFIX=/usr/local by default)
#   make test-install    install into a temporary prefix, build the quickstart with
#                        pkg-config only, run it, remove the prefix
#
# Everything this Makefile builds goes under target/ (C programs under target/c/).

PROFILE ?= release
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CARGO ?= cargo
VALGRIND ?= valgrind
PKG_CONFIG ?= pkg-config
INSTALL ?= install

ifeq ($(PROFILE),release)
CARGO_PROFILE_FLAG := --release
else ifeq ($(PROFILE),debug)
CARGO_PROFILE_FLAG :=
else
$(error PROFILE must be release or debug, not '$(PROFILE)')
endif

VERSION := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
ifeq ($(VERSION),)
$(error could not read the version from Cargo.toml)
endif

LIB_DIR := target/$(PROFILE)
SHARED_LIB := $(LIB_DIR)/libbioxen_vm.so
STATIC_LIB := $(LIB_DIR)/libbioxen_vm.a
NATIVE_LIBS_FILE := $(LIB_DIR)/bioxen_vm.native-static-libs
PC_FILE := target/pkgconfig/bioxen_vm.pc
# In the .pc file, directories under the prefix are written relative to it.
PC_LIBDIR := $(patsubst $(PREFIX)/%,$${exec_prefix}/%,$(LIBDIR))
PC_INCLUDEDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
HEADER := include/bioxen_vm.h
C_DIR := target/c/$(PROFILE)

C_FLAGS := -std=c99 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude
CXX_FLAGS := -std=c++17 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude
LINK_FLAGS := -L$(LIB_DIR) -lbioxen_vm -Wl,-rpath,$(abspath $(LIB_DIR))

C_TESTS := $(patsubst tests/c/%.c,$(C_DIR)/%,$(wildcard tests/c/test_*.c))
CXX_TESTS := $(C_DIR)/header_cpp
EXAMPLES := $(patsubst examples/c/%.c,$(C_DIR)/%,$(wildcard examples/c/*.c))

.PHONY: all build example test-c c-programs install test-install FORCE
all: build

# Cargo decides what is stale; the libraries' timestamps tell make whether to relink.
build: $(SHARED_LIB)
$(SHARED_LIB): FORCE
	$(CARGO) build $(CARGO_PROFILE_FLAG)
	@# Programs linked here record the SONAME (libbioxen_vm.so.<ABI>): give it a link.
	@soname=$$(readelf -d $(SHARED_LIB) 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p'); \
	if [ -n "$$soname" ] && [ "$$soname" != libbioxen_vm.so ]; then \
		ln -sf libbioxen_vm.so $(LIB_DIR)/$$soname; \
	fi
$(STATIC_LIB): $(SHARED_LIB)
FORCE:

$(C_DIR)/test_%: tests/c/test_%.c tests/c/check.h $(HEADER) $(SHARED_LIB)
	@mkdir -p $(@D)
	$(CC) $(C_FLAGS) -pthread $< -o $@ $(LINK_FLAGS)

$(C_DIR)/header_cpp: tests/c/header_cpp.cpp $(HEADER) $(SHARED_LIB)
	@mkdir -p $(@D)
	$(CXX) $(CXX_FLAGS) $< -o $@ $(LINK_FLAGS)

$(C_DIR)/%: examples/c/%.c $(HEADER) $(SHARED_LIB)
	@mkdir -p $(@D)
	$(CC) $(C_FLAGS) $< -o $@ $(LINK_FLAGS)

c-programs: $(C_TESTS) $(CXX_TESTS) $(EXAMPLES)

example: $(C_DIR)/quickstart
	$(C_DIR)/quickstart

# The package tests install from local rocks servers built here (tests/rocks).
ROCKS_DIR := target/test-rocks

test-c: c-programs
	tests/c/check_exports.sh $(SHARED_LIB) $(HEADER) tests/c/test_*.c
	BIOXEN_TEST_ROCKS=$$(python3 tests/rocks/build_servers.py $(ROCKS_DIR) 5.4)/main \
	VALGRIND=$(VALGRIND) python3 tests/rig/fake_xapi.py run --http -- python3 tests/rig/sshd_rig.py run -- \
		tests/c/run.sh $(C_TESTS) $(CXX_TESTS) $(EXAMPLES)

# What a program linking the static library also needs, as rustc reports it. It depends
# only on the dependencies, so it is asked once per Cargo.lock.
$(NATIVE_LIBS_FILE): Cargo.toml Cargo.lock | $(SHARED_LIB)
	@libs=$$($(CARGO) rustc $(CARGO_PROFILE_FLAG) --lib --quiet -- --print native-static-libs 2>&1 \
		| sed -n 's/^note: native-static-libs: //p' | tail -n 1); \
	if [ -z "$$libs" ]; then echo "rustc did not report native-static-libs" >&2; exit 1; fi; \
	echo "native-static-libs: $$libs"; \
	printf '%s\n' "$$libs" > $@

$(PC_FILE): bioxen_vm.pc.in $(NATIVE_LIBS_FILE) Cargo.toml FORCE
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' \
		-e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e "s|@LIBS_PRIVATE@|$$(cat $(NATIVE_LIBS_FILE))|g" $< > $@

# The shared library is installed as libbioxen_vm.so.VERSION with a libbioxen_vm.so link
# (and a link named after its SONAME, when the library carries one).
install: $(SHARED_LIB) $(STATIC_LIB) $(PC_FILE)
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/libbioxen_vm.so.$(VERSION)
	ln -sf libbioxen_vm.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libbioxen_vm.so
	@soname=$$(readelf -d $(SHARED_LIB) 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p'); \
	if [ -n "$$soname" ] && [ "$$soname" != libbioxen_vm.so ] && \
	   [ "$$soname" != libbioxen_vm.so.$(VERSION) ]; then \
		echo "ln -sf libbioxen_vm.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$$soname"; \
		ln -sf libbioxen_vm.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$$soname; \
	fi
	$(INSTALL) -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/libbioxen_vm.a
	$(INSTALL) -m 644 $(HEADER) $(DESTDIR)$(INCLUDEDIR)/bioxen_vm.h
	$(INSTALL) -m 644 $(PC_FILE) $(DESTDIR)$(PKGCONFIGDIR)/bioxen_vm.pc

# Builds the quickstart against a fresh installation, with nothing but what pkg-config
# says: once against the shared library, once against the static one (which checks
# Libs.private).
test-install: $(SHARED_LIB) $(STATIC_LIB)
	@set -eu; \
	tmp=$$(mktemp -d); \
	trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory install PREFIX="$$tmp" LIBDIR="$$tmp/lib" \
		INCLUDEDIR="$$tmp/include" PKGCONFIGDIR="$$tmp/lib/pkgconfig" DESTDIR=; \
	export PKG_CONFIG_PATH="$$tmp/lib/pkgconfig"; \
	$(PKG_CONFIG) --validate bioxen_vm; \
	flags=$$($(PKG_CONFIG) --cflags --libs bioxen_vm); \
	echo "pkg-config --cflags --libs bioxen_vm: $$flags"; \
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic examples/c/quickstart.c $$flags \
		-o "$$tmp/quickstart"; \
	LD_LIBRARY_PATH="$$tmp/lib" ldd "$$tmp/quickstart" | grep -q "$$tmp/lib/libbioxen_vm.so"; \
	LD_LIBRARY_PATH="$$tmp/lib" "$$tmp/quickstart" > "$$tmp/shared.out"; \
	echo "shared: $$(tail -n 1 "$$tmp/shared.out")"; \
	static_flags=$$($(PKG_CONFIG) --static --libs bioxen_vm); \
	private=$${static_flags#*-lbioxen_vm}; \
	echo "static: $$($(PKG_CONFIG) --variable=libdir bioxen_vm)/libbioxen_vm.a$$private"; \
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic examples/c/quickstart.c \
		$$($(PKG_CONFIG) --cflags bioxen_vm) \
		"$$($(PKG_CONFIG) --variable=libdir bioxen_vm)/libbioxen_vm.a" $$private \
		-o "$$tmp/quickstart-static"; \
	if readelf -d "$$tmp/quickstart-static" | grep -q 'libbioxen_vm'; then \
		echo "the static build still needs libbioxen_vm.so" >&2; exit 1; fi; \
	"$$tmp/quickstart-static" > "$$tmp/static.out"; \
	echo "static: $$(tail -n 1 "$$tmp/static.out")"; \
	echo "test-install: OK"
