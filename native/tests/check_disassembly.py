#!/usr/bin/env python3
"""Checks that each codec object file holds only instructions its CPU-dispatch level allows.

The kernels of each instruction set live in their own translation unit, compiled with their own flags, and
codec.cpp calls a unit only on CPUs that have those extensions. A unit that contains an instruction beyond its
level would crash with SIGILL on a CPU that passes the dispatch check, e.g. VBMI2 code in the F+BW+VL unit on a
Skylake-SP. This script disassembles each object (objdump) and classifies every instruction by its encoding
(EVEX prefix 0x62 = AVX-512, VEX 0xC4/0xC5 = AVX) and by mnemonic families of the extensions:

    level        unit(s)                          allowed beyond x86-64 (SSE2)
    base         codec.cpp, kernels_scalar.cpp,   nothing (no VEX/EVEX, no SSE3+, no POPCNT/BMI/LZCNT)
                 bitmap_module.cpp
    avx2         kernels_avx2.cpp                 SSE3..SSE4.2, AVX, AVX2, POPCNT, BMI1
    avx512       kernels_avx512.cpp               + AVX-512 F/BW/VL (and FMA/F16C, which every AVX-512F CPU has)
    avx512vbmi2  kernels_avx512_vbmi2.cpp         + AVX-512 VBMI2

Everything else (DQ, CD, VBMI, IFMA, VNNI, BITALG, VPOPCNTDQ, BF16, FP16, GFNI, VAES, VPCLMULQDQ, BMI2, LZCNT,
ADX, SHA, AES...) is rejected at every level: no flag of ours enables it.

Usage:
    check_disassembly.py LEVEL=FILE.o ...        explicit levels
    check_disassembly.py --cmake-dir BUILD       every object of the memsim_codec target in a CMake build tree
    check_disassembly.py --self-test DIR         compiles known-bad snippets into DIR and expects rejections
Exit status 0 when every object is clean; 1 with a list of offending instructions otherwise.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

LEVELS = ("base", "avx2", "avx512", "avx512vbmi2")
UNIT_LEVELS = {
    "codec.cpp": "base",
    "kernels_scalar.cpp": "base",
    "bitmap_module.cpp": "base",
    "kernels_avx2.cpp": "avx2",
    "kernels_avx512.cpp": "avx512",
    "kernels_avx512_vbmi2.cpp": "avx512vbmi2",
}

# Extension -> mnemonic pattern (full match on the mnemonic, without {vex}/{evex} pseudo-prefixes).
NEVER = {
    "AVX512DQ": r"vpmullq|vcvtt?p[sd]2u?qq|vcvtu?qq2p[sd]|v(extract|insert)[fi](32x8|64x2)"
                r"|vbroadcast[fi](32x8|64x2|32x2)|vfpclass[ps][sd]|vrange[ps][sd]|vreduce[ps][sd]"
                r"|vpmovm2[dq]|vpmov[dq]2m|k\w+b|kaddw|ktestw",
    "AVX512CD": r"vpconflict[dq]|vplzcnt[dq]|vpbroadcastm(b2q|w2d)",
    "AVX512VBMI": r"vpermb|vpermi2b|vpermt2b|vpmultishiftqb",
    "AVX512IFMA": r"vpmadd52[lh]uq",
    "AVX512VNNI/AVX-VNNI": r"vpdpbusds?|vpdpwssds?",
    "AVX512BITALG": r"vpopcnt[bw]|vpshufbitqmb",
    "AVX512VPOPCNTDQ": r"vpopcnt[dq]",
    "AVX512BF16": r"vcvtne2ps2bf16|vcvtneps2bf16|vdpbf16ps",
    "AVX512FP16": r"v(?!cvtps2ph$)\w+(ph|sh)",
    "AVX512ER/PF/4FMAPS": r"v4f\w+|vp4dp\w+|vexp2p[sd]|vrcp28\w+|vrsqrt28\w+|v(gather|scatter)pf\w+",
    "GFNI": r"v?gf2p8\w+",
    "AES/VAES": r"v?aes\w+",
    "PCLMULQDQ/VPCLMULQDQ": r"v?pclmul\w*",
    "SHA": r"sha(1|256)\w+",
    "BMI2": r"pdep|pext|bzhi|mulx|rorx|sarx|shlx|shrx",
    "LZCNT": r"lzcnt",
    "ADX": r"adcx|adox",
    "MOVBE": r"movbe",
}
VBMI2 = r"vpcompress[bw]|vpexpand[bw]|vpshldv?[wdq]|vpshrdv?[wdq]"
FMA_F16C = r"vfn?m(add|sub)\w+|vfmaddsub\w+|vfmsubadd\w+|vcvtph2ps|vcvtps2ph"
SSE3_PLUS = (  # legacy-encoded SSE3 / SSSE3 / SSE4.1 / SSE4.2 / SSE4a
    r"addsubp[sd]|h(add|sub)p[sd]|lddqu|movddup|movs[hl]dup|fisttp\w*|monitor|mwait"
    r"|pshufb|ph(add|sub)\w+|pmaddubsw|pmulhrsw|psign[bwd]|pabs[bwd]|palignr"
    r"|pblendw|pblendvb|blendv?p[sd]|dpp[sd]|insertps|extractps|movntdqa|mpsadbw|packusdw|pcmpeqq"
    r"|pextr[bdq]|pinsr[bdq]|pm(ax|in)(sb|sd|ud|uw)|pmov[sz]x\w+|pmuldq|pmulld|ptest|round[ps][sd]|phminposuw"
    r"|pcmp[ei]str[im]|pcmpgtq|crc32\w*|extrq|insertq|movnts[sd]"
)
POPCNT_BMI1 = r"popcnt|tzcnt|andn|bextr|blsi|blsmsk|blsr"

_PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3}


def _encoding(raw: list[int]) -> str:
    i = 0
    while i < len(raw) and raw[i] in _PREFIXES:
        i += 1
    if i < len(raw) and raw[i] == 0x62:
        return "evex"
    if i < len(raw) and raw[i] in (0xC4, 0xC5):
        return "vex"
    return "legacy"


def _match(pattern: str, mnemonic: str) -> bool:
    return re.fullmatch(pattern, mnemonic) is not None


def violation(level: str, raw: list[int], mnemonic: str) -> str | None:
    """Why this instruction is not allowed at `level`, or None."""
    enc = _encoding(raw)
    for ext, pat in NEVER.items():
        if _match(pat, mnemonic):
            return ext
    rank = LEVELS.index(level)
    if _match(VBMI2, mnemonic) and rank < LEVELS.index("avx512vbmi2"):
        return "AVX512VBMI2"
    if enc == "evex" and rank < LEVELS.index("avx512"):
        return "AVX-512 (EVEX)"
    if mnemonic.startswith("k") and re.fullmatch(r"k(mov|and|andn|or|xor|xnor|not|add|shiftl|shiftr|test|ortest|unpck)\w*",
                                                  mnemonic) and rank < LEVELS.index("avx512"):
        return "AVX-512 opmask"
    if _match(FMA_F16C, mnemonic) and rank < LEVELS.index("avx512"):
        return "FMA/F16C"
    if enc == "vex" and rank < LEVELS.index("avx2"):
        return "AVX (VEX)"
    if enc == "legacy" and rank < LEVELS.index("avx2"):
        if _match(SSE3_PLUS, mnemonic):
            return "SSE3+"
        if _match(POPCNT_BMI1, mnemonic):
            return "POPCNT/BMI1"
    if enc == "vex" and rank < LEVELS.index("avx2") and _match(POPCNT_BMI1, mnemonic):
        return "BMI1"
    return None


def disassemble(obj: Path) -> list[tuple[str, list[int], str, str]]:
    """(address, raw bytes, mnemonic, full text) of every instruction in the object's executable sections."""
    out = subprocess.run(["objdump", "-d", "-w", "--insn-width=16", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    result = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or not parts[0].strip().endswith(":"):
            continue
        try:
            raw = [int(b, 16) for b in parts[1].split()]
        except ValueError:
            continue
        text = parts[2].strip()
        words = [w for w in text.split() if w not in ("{vex}", "{evex}", "{vex3}", "rex", "rex.W", "data16", "cs",
                                                      "ds", "lock", "notrack", "bnd") and not w.startswith("rex.")]
        if not words:
            continue
        mnemonic = words[0]
        if mnemonic in ("rep", "repz", "repnz", "repe", "repne") and len(words) > 1:
            mnemonic = words[1]
        result.append((parts[0].strip().rstrip(":"), raw, mnemonic, text))
    return result


def check(level: str, obj: Path) -> list[str]:
    problems = []
    count = 0
    for addr, raw, mnemonic, text in disassemble(obj):
        count += 1
        why = violation(level, raw, mnemonic)
        if why:
            problems.append(f"{obj.name} [{level}] {addr}: {text}  <- {why}")
    if count == 0:
        problems.append(f"{obj.name}: no instructions found (objdump output not understood?)")
    return problems


def objects_of_cmake_dir(build: Path) -> list[tuple[str, Path]]:
    objs = sorted(build.glob("**/memsim_codec.dir/**/*.o"))
    if not objs:
        raise SystemExit(f"no memsim_codec objects under {build}")
    pairs = []
    for o in objs:
        unit = o.name.removesuffix(".o")
        if unit not in UNIT_LEVELS:
            raise SystemExit(f"{o}: unit {unit} has no level in check_disassembly.py UNIT_LEVELS; add it")
        pairs.append((UNIT_LEVELS[unit], o))
    return pairs


SELF_TEST = {  # snippet, flags, level it is checked at: each must be rejected
    "vbmi2_in_avx512": ("#include <immintrin.h>\n__m512i f(__m512i v, __mmask64 m) "
                        "{ return _mm512_maskz_compress_epi8(m, v); }\n",
                        ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vbmi2"], "avx512"),
    "avx512_in_avx2": ("#include <immintrin.h>\n__m512i f(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }\n",
                       ["-mavx512f"], "avx2"),
    "dq_in_avx512": ("#include <immintrin.h>\n__m512i f(__m512i a, __m512i b) { return _mm512_mullo_epi64(a, b); }\n",
                     ["-mavx512f", "-mavx512dq"], "avx512"),
    "avx2_in_base": ("#include <immintrin.h>\n__m256i f(__m256i a, __m256i b) { return _mm256_add_epi32(a, b); }\n",
                     ["-mavx2"], "base"),
    "popcnt_in_base": ("unsigned long f(unsigned long x) { return __builtin_popcountl(x); }\n", ["-mpopcnt"], "base"),
    "bmi2_in_avx2": ("unsigned long f(unsigned long x, unsigned long y) { return x << (y & 63); }\n",
                     ["-mbmi2", "-O2"], "avx2"),
}


def self_test(workdir: Path) -> list[str]:
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        return ["self-test: no C++ compiler"]
    workdir.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, (code, flags, level) in SELF_TEST.items():
        src, obj = workdir / f"{name}.cpp", workdir / f"{name}.o"
        src.write_text(code)
        subprocess.run([cxx, "-O2", *flags, "-c", str(src), "-o", str(obj)], check=True)
        if not check(level, obj):
            problems.append(f"self-test {name}: a {level} unit with {' '.join(flags)} code was not rejected")
    return problems


def main(argv: list[str]) -> int:
    if shutil.which("objdump") is None:
        print("check_disassembly: objdump not found (binutils)")
        return 1
    if argv[:1] == ["--self-test"] and len(argv) == 2:
        problems = self_test(Path(argv[1]))
        print("\n".join(problems) if problems else f"check_disassembly self-test: {len(SELF_TEST)} bad units rejected")
        return 1 if problems else 0
    if argv[:1] == ["--cmake-dir"] and len(argv) == 2:
        pairs = objects_of_cmake_dir(Path(argv[1]))
    else:
        pairs = []
        for arg in argv:
            level, _, path = arg.partition("=")
            if level not in LEVELS or not path:
                print(__doc__)
                return 2
            pairs.append((level, Path(path)))
    if not pairs:
        print(__doc__)
        return 2
    problems = []
    for level, obj in pairs:
        found = check(level, obj)
        problems += found
        print(f"check_disassembly: {obj.name:32s} {level:12s} {'FAIL' if found else 'ok'}")
    if problems:
        print("\n".join(problems[:50]))
        print(f"check_disassembly: {len(problems)} instructions beyond their unit's level")
        return 1
    print("check_disassembly: all units clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
