#!/usr/bin/env bash
# Installs what the build and the tests need on a Debian machine, idempotently, then builds everything:
# the BPF objects (bpf/build), the native addon (native/build) and the TypeScript (dist/).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make g++ binutils python3 pkg-config iproute2 iptables
  qemu-system-x86 busybox-static cpio xz-utils zstd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! npm ls --depth=0 >/dev/null 2>&1; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
