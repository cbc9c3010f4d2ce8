#!/usr/bin/env bash
# Installs the system tools the tests need (Debian packages), only those missing. Idempotent.
#   gcc/g++/make: the C SDK;  clang: its fuzzer;  node/npm: the JavaScript SDK and the third-party
#   MessagePack check;  mcs/mono: the C# SDK;  godot3-server: the Godot addon;  chromium: browser games;
#   strace: the test that counts system calls per step.
set -euo pipefail
need=("gcc:gcc" "g++:g++" "make:make" "clang:clang" "node:nodejs" "npm:npm"
      "mcs:mono-mcs" "mono:mono-runtime" "godot3-server:godot3-server" "chromium:chromium"
      "strace:strace")
missing=()
for pair in "${need[@]}"; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# libFuzzer and the sanitizer runtimes of clang live in a separate package.
if command -v clang >/dev/null 2>&1; then
  rt=$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
  if [ ! -f "$rt" ]; then
    ver=$(clang -dumpversion | cut -d. -f1)
    missing+=("libclang-rt-${ver}-dev")
  fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-system: missing ${missing[*]}; run as root or install them yourself" >&2
    exit 1
  fi
  echo "setup-system: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
