#!/usr/bin/env bash
# Standalone C++ tests of the codec kernels, outside Python:
#   1. x86-64: scalar + AVX2 natively, plus the AVX-512 kernels against SIMDe emulation (libsimde-dev), all
#      under AddressSanitizer + UBSan.
#   2. aarch64: scalar + NEON cross-compiled (g++-aarch64-linux-gnu) and run under qemu-aarch64 (qemu-user).
# Usage: native/tests/run_native_tests.sh [x86|arm|all]   (default all; a missing toolchain is skipped)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/.."
out="${TMPDIR:-/tmp}/memsim-native-tests"
mkdir -p "$out"
what="${1:-all}"
common=(-std=c++17 -O1 -g -Wall -Wno-psabi -I"$src")

if [[ "$what" == all || "$what" == x86 ]] && [[ "$(uname -m)" == x86_64 ]]; then
  san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  avx512=(-mavx512f -mavx512bw -mavx512vl -mavx512vbmi2 -mavx2 -mpopcnt -mbmi)
  if [[ -f /usr/include/simde/x86/avx512.h ]]; then
    avx512=(-DMEMSIM_AVX512_EMULATION)
    echo "x86: AVX-512 kernels built against SIMDe emulation"
  fi
  g++ "${common[@]}" "${san[@]}" -c "$src/codec.cpp" -o "$out/codec.o"
  g++ "${common[@]}" "${san[@]}" -c "$src/kernels_scalar.cpp" -o "$out/scalar.o"
  g++ "${common[@]}" "${san[@]}" -mavx2 -mpopcnt -mbmi -c "$src/kernels_avx2.cpp" -o "$out/avx2.o"
  g++ "${common[@]}" "${san[@]}" "${avx512[@]}" -c "$src/kernels_avx512.cpp" -o "$out/avx512.o"
  g++ "${common[@]}" "${san[@]}" "${avx512[@]}" -c "$here/roundtrip_test.cpp" -o "$out/test.o"
  g++ "${san[@]}" "$out"/{codec,scalar,avx2,avx512,test}.o -o "$out/roundtrip_x86"
  "$out/roundtrip_x86"
fi

if [[ "$what" == all || "$what" == arm ]]; then
  if command -v aarch64-linux-gnu-g++ >/dev/null; then
    aarch64-linux-gnu-g++ -std=c++17 -O2 -static -I"$src" "$here/roundtrip_test.cpp" "$src/codec.cpp" \
      "$src/kernels_scalar.cpp" "$src/kernels_neon.cpp" -o "$out/roundtrip_aarch64"
    echo "aarch64: built $(file -b "$out/roundtrip_aarch64" | cut -d, -f1-2)"
    if command -v qemu-aarch64 >/dev/null; then
      qemu-aarch64 "$out/roundtrip_aarch64"
    else
      echo "aarch64: qemu-aarch64 not installed; built only"
    fi
  else
    echo "aarch64: aarch64-linux-gnu-g++ not installed; skipped"
  fi
fi
