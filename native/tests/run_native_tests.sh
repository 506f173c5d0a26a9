#!/usr/bin/env bash
# Standalone C++ tests of the codec, outside Python. Parts (default: all; a missing tool skips its part with a
# message saying so, and the part's summary line is not printed):
#   x86    scalar, AVX2 and AVX-512 kernel tables and the auto mode, under AddressSanitizer + UBSan, against a
#          plain reference with exactly-sized buffers. The AVX-512 units run natively on CPUs with
#          F+BW+VL+VBMI2, else through SIMDe emulation (libsimde-dev) when installed, else are only compiled.
#          MEMSIM_AVX512_EMULATION=1 forces the emulation (to test the path CPUs without AVX-512 take).
#   isa    builds the codec object library with native/CMakeLists.txt (its real per-unit flags) and
#          disassembles every unit (check_disassembly.py): no VBMI2 or other instruction beyond a unit's level.
#   fuzz   the decoder fuzz target (fuzz/fuzz_decode.cpp) under ASan + UBSan for MEMSIM_FUZZ_SECONDS
#          (default 20) from the committed corpus (fuzz/corpus): libFuzzer (clang++ + libclang-rt-dev) when
#          available, else a g++ build with a random-mutation driver (not coverage-guided; forced with
#          MEMSIM_FUZZ_ENGINE=standalone).
#   arm    scalar + NEON cross-compiled (g++-aarch64-linux-gnu), run under qemu-aarch64 (qemu-user) for the
#          emulated Raspberry Pi CPUs cortex-a72 (Pi 4) and cortex-a76 (Pi 5).
#   arm-bench  kernel_bench (NEON and scalar against memcpy) under qemu for both CPUs: emulated, indicative only.
# Usage: native/tests/run_native_tests.sh [x86|isa|fuzz|arm|arm-bench|all]...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/.."
out="${TMPDIR:-/tmp}/memsim-native-tests-$(id -u)"
mkdir -p "$out"
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(all)
want() { local p; for p in "${parts[@]}"; do [[ "$p" == all || "$p" == "$1" ]] && return 0; done; return 1; }
common=(-std=c++17 -O1 -g -Wall -Wextra -Wno-psabi -I"$src")
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
flags_avx2=(-mavx2 -mpopcnt -mbmi)
flags_avx512=(-mavx512f -mavx512bw -mavx512vl "${flags_avx2[@]}")
flags_vbmi2=("${flags_avx512[@]}" -mavx512vbmi2)
arm_cpus=(cortex-a72 cortex-a76)
is_x86=false
[[ "$(uname -m)" == x86_64 ]] && is_x86=true
cpu_has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }

if want x86 && $is_x86; then
  e512=("${flags_avx512[@]}")
  ev2=("${flags_vbmi2[@]}")
  if [[ "${MEMSIM_AVX512_EMULATION:-}" != 1 ]] && cpu_has avx512f && cpu_has avx512bw && cpu_has avx512vl &&
      cpu_has avx512_vbmi2; then
    echo "x86: AVX-512 units run natively (CPU has F+BW+VL+VBMI2)"
  elif [[ -f /usr/include/simde/x86/avx512.h ]]; then
    e512=(-DMEMSIM_AVX512_EMULATION)
    ev2=(-DMEMSIM_AVX512_EMULATION)
    echo "x86: AVX-512 units built against SIMDe emulation"
  else
    echo "x86: AVX-512 units compiled only (no AVX-512+VBMI2 here and no libsimde-dev)"
  fi
  g++ "${common[@]}" "${san[@]}" -c "$src/codec.cpp" -o "$out/codec.o"
  g++ "${common[@]}" "${san[@]}" -c "$src/kernels_scalar.cpp" -o "$out/scalar.o"
  g++ "${common[@]}" "${san[@]}" "${flags_avx2[@]}" -c "$src/kernels_avx2.cpp" -o "$out/avx2.o"
  g++ "${common[@]}" "${san[@]}" "${e512[@]}" -c "$src/kernels_avx512.cpp" -o "$out/avx512.o"
  g++ "${common[@]}" "${san[@]}" "${ev2[@]}" -c "$src/kernels_avx512_vbmi2.cpp" -o "$out/avx512_vbmi2.o"
  g++ "${common[@]}" "${san[@]}" "${e512[@]}" -c "$here/roundtrip_test.cpp" -o "$out/test.o"
  g++ "${san[@]}" "$out"/{codec,scalar,avx2,avx512,avx512_vbmi2,test}.o -o "$out/roundtrip_x86"
  "$out/roundtrip_x86"
fi

if want isa && $is_x86; then
  if command -v cmake >/dev/null && command -v objdump >/dev/null && command -v python3 >/dev/null; then
    rm -rf "$out/cmake-codec"
    cmake -S "$src" -B "$out/cmake-codec" -DMEMSIM_CODEC_ONLY=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$out/cmake-codec" -j 2 >/dev/null
    python3 "$here/check_disassembly.py" --self-test "$out/isa-selftest"
    python3 "$here/check_disassembly.py" --cmake-dir "$out/cmake-codec"
    echo "isa: disassembly check passed"
  else
    echo "isa: needs cmake, objdump and python3; skipped"
  fi
fi

if want fuzz; then
  secs="${MEMSIM_FUZZ_SECONDS:-20}"
  fz="$here/fuzz"
  rm -rf "$out/fuzz" && mkdir -p "$out/fuzz/new" "$out/fuzz/artifacts"
  units=("$src/codec.cpp" "$src/kernels_scalar.cpp")
  unit_flags=("" "")
  if $is_x86; then
    units+=("$src/kernels_avx2.cpp" "$src/kernels_avx512.cpp" "$src/kernels_avx512_vbmi2.cpp")
    unit_flags+=("${flags_avx2[*]}" "${flags_avx512[*]}" "${flags_vbmi2[*]}")
  elif [[ "$(uname -m)" == aarch64 ]]; then
    units+=("$src/kernels_neon.cpp")
    unit_flags+=("")
  fi
  libfuzzer=false
  if [[ "${MEMSIM_FUZZ_ENGINE:-}" != standalone ]] && command -v clang++ >/dev/null && echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
      clang++ -x c++ -fsanitize=fuzzer - -o "$out/fuzz/probe" 2>/dev/null; then
    libfuzzer=true
  fi
  if $libfuzzer; then
    objs=()
    for i in "${!units[@]}"; do
      o="$out/fuzz/$(basename "${units[$i]}" .cpp).o"
      # shellcheck disable=SC2086
      clang++ "${common[@]}" "${san[@]}" -fsanitize=fuzzer-no-link ${unit_flags[$i]} -c "${units[$i]}" -o "$o"
      objs+=("$o")
    done
    clang++ "${common[@]}" "${san[@]}" -fsanitize=fuzzer "$fz/fuzz_decode.cpp" "${objs[@]}" -o "$out/fuzz/fuzz_decode"
    echo "fuzz: libFuzzer (coverage-guided) for ${secs}s from $(ls "$fz/corpus" | wc -l) corpus files"
    # New inputs go to the scratch directory (first one); the committed corpus is only read.
    "$out/fuzz/fuzz_decode" -max_total_time="$secs" -max_len=4096 -dict="$fz/fuzz_decode.dict" \
      -artifact_prefix="$out/fuzz/artifacts/" -print_final_stats=1 "$out/fuzz/new" "$fz/corpus" \
      >"$out/fuzz/log" 2>&1 || { tail -60 "$out/fuzz/log"; echo "fuzz: FAILED, input in $out/fuzz/artifacts"; exit 1; }
    grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss" "$out/fuzz/log" || true
    echo "fuzz: libFuzzer ran ${secs}s, no failure"
  elif command -v g++ >/dev/null; then
    objs=()
    for i in "${!units[@]}"; do
      o="$out/fuzz/$(basename "${units[$i]}" .cpp).o"
      # shellcheck disable=SC2086
      g++ "${common[@]}" "${san[@]}" ${unit_flags[$i]} -c "${units[$i]}" -o "$o"
      objs+=("$o")
    done
    g++ "${common[@]}" "${san[@]}" "$fz/fuzz_decode.cpp" "$fz/standalone_main.cpp" "${objs[@]}" \
      -o "$out/fuzz/fuzz_decode_standalone"
    echo "fuzz: libFuzzer not available or not wanted (MEMSIM_FUZZ_ENGINE); g++ random-mutation driver for ${secs}s (not coverage-guided)"
    "$out/fuzz/fuzz_decode_standalone" -max_total_time="$secs" "$fz/corpus"
    echo "fuzz: standalone driver ran ${secs}s, no failure"
  else
    echo "fuzz: no C++ compiler; skipped"
  fi
fi

if want arm || want arm-bench; then
  if command -v aarch64-linux-gnu-g++ >/dev/null; then
    if want arm; then
      aarch64-linux-gnu-g++ -std=c++17 -O2 -static -Wall -I"$src" "$here/roundtrip_test.cpp" "$src/codec.cpp" \
        "$src/kernels_scalar.cpp" "$src/kernels_neon.cpp" -o "$out/roundtrip_aarch64"
      echo "aarch64: built $(file -b "$out/roundtrip_aarch64" | cut -d, -f1-2)"
    fi
    if want arm-bench; then
      aarch64-linux-gnu-g++ -std=c++17 -O3 -DNDEBUG -static -I"$src" "$here/kernel_bench.cpp" "$src/codec.cpp" \
        "$src/kernels_scalar.cpp" "$src/kernels_neon.cpp" -o "$out/kernel_bench_aarch64"
    fi
    if command -v qemu-aarch64 >/dev/null; then
      for cpu in "${arm_cpus[@]}"; do
        if want arm; then
          echo "aarch64 under qemu-aarch64 -cpu $cpu:"
          QEMU_CPU="$cpu" qemu-aarch64 "$out/roundtrip_aarch64"
        fi
        if want arm-bench; then
          echo "aarch64 kernel_bench under qemu-aarch64 -cpu $cpu (EMULATED: TCG translation, indicative only):"
          QEMU_CPU="$cpu" qemu-aarch64 "$out/kernel_bench_aarch64" "${MEMSIM_ARM_BENCH_MIB:-64}" 0.5 5 1248
        fi
      done
    else
      echo "aarch64: qemu-aarch64 not installed; built only"
    fi
  else
    echo "aarch64: aarch64-linux-gnu-g++ not installed; skipped"
  fi
fi
