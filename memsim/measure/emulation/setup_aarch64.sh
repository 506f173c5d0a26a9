#!/usr/bin/env bash
# Set up an emulated aarch64 (Raspberry Pi / Jetson CPU side) Python with PyTorch's aarch64 wheel, so that a
# training step's memory can be measured with the real aarch64 CPU kernels on an x86 machine.
#
#   memsim/measure/emulation/setup_aarch64.sh [ROOT]        (ROOT default: ${MEMSIM_EMULATION_DIR:-~/.cache/memsim/aarch64})
#
# Idempotent: each stage leaves a stamp and is skipped when done. What it makes under ROOT:
#   rootfs/        Debian bookworm arm64 userland (mmdebstrap --variant=extract; nothing is emulated to build it)
#   wheels/        torch==$TORCH_VERSION aarch64 + numpy + torch's pinned dependencies (the PyPI aarch64 wheel is
#                  the CUDA 13 build; libtorch_cpu links the nvidia-* libraries, ~2.7 GB in all)
#   site/          those wheels installed with pip --target (the PYTHONPATH of the emulated python)
#   prefix/<cpu>/  the qemu -L prefix for one CPU model: symlinks to rootfs/* plus a fake
#                  /sys/devices/system/cpu/... (MIDR_EL1, online/possible/present) and /proc/cpuinfo; without the
#                  MIDR file `import torch` segfaults in cpuinfo. CPUs: cortex-a76 (Pi 5), cortex-a72 (Pi 4),
#                  cortex-a57 (Jetson Nano/TX2), cortex-a53.
#   setup.json     what was installed (the runner, memsim.measure.emulation.runner, refuses to run without it)
# Needs root for apt-get (qemu-user, mmdebstrap) when they are missing, network access to Debian's and PyPI's
# registries, and ~6 GB of disk (wheels + installed site).
set -euo pipefail

ROOT="${1:-${MEMSIM_EMULATION_DIR:-$HOME/.cache/memsim/aarch64}}"
TORCH_VERSION="${MEMSIM_TORCH_VERSION:-2.13.0}"
NCPU="${MEMSIM_EMULATED_CPUS:-4}"          # how many CPUs the fake /sys says are online
HOST_PYTHON="${MEMSIM_HOST_PYTHON:-python3}"
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"
log() { printf '[setup_aarch64] %s\n' "$*" >&2; }

# ---- 1. host tools ----
need=()
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing ${need[*]} and not root: install them (apt-get install ${need[*]}) and rerun"; exit 1
  fi
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! "$HOST_PYTHON" -m pip --version >/dev/null 2>&1; then
  log "$HOST_PYTHON has no pip; set MEMSIM_HOST_PYTHON to a python with pip"; exit 1
fi

# ---- 2. the arm64 userland ----
mirror() {
  # This machine's Debian mirror (deb822 .sources or one-line .list), else Debian's default.
  local m=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m="$(awk '/^URIs:/ {print $2; exit}' "$f")"
    case "$m" in *security*) m="";; esac
    [ -n "$m" ] && break
  done
  if [ -z "$m" ]; then
    m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
         | awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^(http|https|file):/) {print $i; exit}}')"
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
ROOTFS="$ROOT/rootfs"
if [ ! -f "$ROOT/.stamp-rootfs" ]; then
  MIRROR="${MEMSIM_DEBIAN_MIRROR:-$(mirror)}"
  log "mmdebstrap arm64 bookworm from $MIRROR -> $ROOTFS"
  rm -rf "$ROOTFS" "$ROOTFS.tmp"
  mmdebstrap --quiet --variant=extract --arch=arm64 \
    --include=python3,python3-venv,python3-pip,libgomp1,libstdc++6 bookworm "$ROOTFS.tmp" "$MIRROR"
  mv "$ROOTFS.tmp" "$ROOTFS"
  touch "$ROOT/.stamp-rootfs"
fi
[ -x "$ROOTFS/usr/bin/python3.11" ] || { log "no python3.11 in $ROOTFS; remove $ROOT/.stamp-rootfs and rerun"; exit 1; }

# ---- 3. torch's aarch64 wheel and its dependencies ----
WHEELS="$ROOT/wheels"
SITE="$ROOT/site"
PLATFORMS=()
for v in 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36; do PLATFORMS+=(--platform "manylinux_2_${v}_aarch64"); done
PLATFORMS+=(--platform manylinux2014_aarch64 --platform linux_aarch64)
TARGET_ARGS=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 "${PLATFORMS[@]}")
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -f "$ROOT/.stamp-wheels" ]; then
  # torch's Requires-Dist closure with markers (and extras) evaluated for linux/aarch64/cp311: pip itself would
  # evaluate them for this x86 host (see wheel_deps.py).
  log "pip download torch==$TORCH_VERSION (aarch64) and its dependencies -> $WHEELS"
  "$HOST_PYTHON" "$HERE/wheel_deps.py" "$WHEELS" "torch==$TORCH_VERSION" numpy -- "${TARGET_ARGS[@]}" \
    > "$ROOT/wheels.txt"
  rm -f "$ROOT/.stamp-site"
  touch "$ROOT/.stamp-wheels"
fi
if [ ! -f "$ROOT/.stamp-site" ]; then
  log "pip install --target $SITE"
  rm -rf "$SITE"
  mapfile -t WHEEL_FILES < "$ROOT/wheels.txt"
  "$HOST_PYTHON" -m pip install -q --no-deps --no-compile --target "$SITE" "${TARGET_ARGS[@]}" "${WHEEL_FILES[@]}"
  touch "$ROOT/.stamp-site"
fi

# ---- 4. qemu -L prefixes with a fake /sys CPU description and /proc/cpuinfo ----
# MIDR_EL1 = implementer 0x41 (Arm) | variant | arch 0xf | part | revision.
declare -A MIDR=([cortex-a76]=0x00000000414fd0b1 [cortex-a72]=0x00000000410fd083
                 [cortex-a57]=0x00000000411fd071 [cortex-a53]=0x00000000410fd034)
declare -A PART=([cortex-a76]=0xd0b [cortex-a72]=0xd08 [cortex-a57]=0xd07 [cortex-a53]=0xd03)
declare -A VARIANT=([cortex-a76]=0x4 [cortex-a72]=0x0 [cortex-a57]=0x1 [cortex-a53]=0x0)
declare -A REVISION=([cortex-a76]=1 [cortex-a72]=3 [cortex-a57]=1 [cortex-a53]=4)
declare -A FEATURES=(
  [cortex-a76]="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
  [cortex-a72]="fp asimd evtstrm crc32 cpuid"
  [cortex-a57]="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
  [cortex-a53]="fp asimd evtstrm crc32 cpuid")
for cpu in "${!MIDR[@]}"; do
  P="$ROOT/prefix/$cpu"
  mkdir -p "$P"
  for entry in "$ROOTFS"/*; do
    name="$(basename "$entry")"
    case "$name" in sys|proc) continue;; esac
    [ -e "$P/$name" ] || [ -L "$P/$name" ] || ln -s "$entry" "$P/$name"
  done
  D="$P/sys/devices/system/cpu"
  mkdir -p "$P/proc"
  : > "$P/proc/cpuinfo"
  for ((i = 0; i < NCPU; i++)); do
    mkdir -p "$D/cpu$i/regs/identification"
    echo "${MIDR[$cpu]}" > "$D/cpu$i/regs/identification/midr_el1"
    echo "0x0000000000000000" > "$D/cpu$i/regs/identification/revidr_el1"
    cat >> "$P/proc/cpuinfo" <<EOF
processor	: $i
BogoMIPS	: 108.00
Features	: ${FEATURES[$cpu]}
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: ${VARIANT[$cpu]}
CPU part	: ${PART[$cpu]}
CPU revision	: ${REVISION[$cpu]}

EOF
  done
  for f in online possible present; do echo "0-$((NCPU - 1))" > "$D/$f"; done
  echo "" > "$D/offline"
done

# ---- 5. a smoke test and the record ----
if [ ! -f "$ROOT/.stamp-smoke" ]; then
  log "smoke test: import torch under qemu-aarch64 (takes ~20 s)"
  PYTHONPATH="$SITE" QEMU_CPU=cortex-a76 qemu-aarch64 -L "$ROOT/prefix/cortex-a76" "$ROOTFS/usr/bin/python3.11" -c \
    'import torch, platform; print(platform.machine(), torch.__version__, torch.backends.mkldnn.is_available())' \
    | tee "$ROOT/smoke.txt"
  grep -q "^aarch64 $TORCH_VERSION" "$ROOT/smoke.txt"
  touch "$ROOT/.stamp-smoke"
fi
"$HOST_PYTHON" - "$ROOT" "$TORCH_VERSION" "$NCPU" <<'EOF'
import glob, json, os, subprocess, sys, time
root, version, ncpu = sys.argv[1], sys.argv[2], int(sys.argv[3])
qemu = subprocess.run(["qemu-aarch64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
wheels = sorted(os.path.basename(p) for p in glob.glob(f"{root}/wheels/*.whl"))
size = sum(os.path.getsize(p) for p in glob.glob(f"{root}/wheels/*.whl"))
info = {"root": root, "rootfs": f"{root}/rootfs", "site": f"{root}/site", "python": f"{root}/rootfs/usr/bin/python3.11",
        "prefixes": {os.path.basename(p): p for p in sorted(glob.glob(f"{root}/prefix/*"))},
        "torch_version": version, "emulated_cpus": ncpu, "qemu": qemu, "wheels": wheels,
        "wheel_bytes": size, "date": time.strftime("%Y-%m-%d")}
json.dump(info, open(f"{root}/setup.json", "w"), indent=1)
print(f"{root}/setup.json: torch {version}, {len(wheels)} wheels, {size / 1e9:.2f} GB, {qemu}")
EOF
