#!/usr/bin/env bash
# Installs, idempotently, every Debian package the build, tests and benchmarks need (packaging:
# dpkg-dev for dpkg-shlibdeps, help2man for the man pages, systemd for systemd-analyze).
# Safe to run repeatedly: it only calls apt-get when a package is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libfmt-dev libhdf5-dev libdnnl-dev liblua5.4-dev
  libcli11-dev nlohmann-json3-dev libpng-dev libedit-dev libssl-dev
  libcairo2-dev fonts-dejavu-core
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-numpy python3-h5py python3-protobuf python3-torch python3-grpcio python3-zarr
  libblosc-dev
  dataset-fashion-mnist tmux openssl
  clang libclang-rt-14-dev libomp-14-dev
  dpkg-dev help2man systemd adduser
  # model graph picture (issue 11): Graphviz's libgvc and its plugins; expat for the SVG test
  graphviz libgraphviz-dev libexpat1-dev
  # elektronn-sched's Slurm back end (issue 12): slurm_test.sh starts slurmctld and slurmd
  # (auth/none, so munge, which slurm-wlm pulls in, is never started)
  slurm-wlm
  # the KD-tree with append (issue 15, engine/util/dynamic_kd_tree.h): nanoflann, header only
  libnanoflann-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "bootstrap: installing ${#missing[@]} missing package(s): ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "bootstrap: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bootstrap: done" >&2
