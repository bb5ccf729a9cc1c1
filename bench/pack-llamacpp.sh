#!/usr/bin/env bash
# Prepares, on this machine, llama.cpp's CUDA build for bench/run-gguf-peer.sh on the
# GPU host (which reaches no registry): node-llama-cpp 3.21.1 with
# @node-llama-cpp/linux-x64-cuda (CUDA 13: libcudart.so.13, libcublas.so.13 come from
# the host's CUDA toolkit or PyTorch). Its libggml-cuda.so (159 MB of CUDA kernels) is
# 124 MB compressed, more than a call carries beside the work tree, so it travels in parts:
#   .dev/llamacpp-js.tar.xz           tools/llamacpp/node_modules without libggml-cuda.so
#                                     and without llama.cpp's source bundle (~12 MB)
#   .dev/llamacpp-cuda.xz.aa, .ab, .ac  libggml-cuda.so, xz, cut in 50 MiB parts
# A machine keeps what earlier calls carried while it stays warm: carry the parts in
# calls of their own, then `bash bench/run-gguf-peer.sh unpack`, then the bench (the
# exact calls: bench/README.md, "llama.cpp beside kvc on GGUF").
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .dev
git check-ignore -q .dev/probe || { echo "pack-llamacpp: .dev/ is not git-ignored" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp tools/llamacpp/package.json tools/llamacpp/bun.lock "$tmp/"
# every optional platform build comes with a plain install; only linux-x64-cuda travels
(cd "$tmp" && bun install --frozen-lockfile >/dev/null)
cuda=node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/libggml-cuda.so
[ -f "$tmp/$cuda" ] || { echo "pack-llamacpp: $cuda was not installed" >&2; exit 1; }
rm -f .dev/llamacpp-cuda.xz.*
xz -T0 -6 -c "$tmp/$cuda" | split -b 50M - .dev/llamacpp-cuda.xz.
tar -C "$tmp" -cf - --exclude="$cuda" --exclude=node_modules/node-llama-cpp/llama/gitRelease.bundle --exclude='node_modules/@node-llama-cpp/linux-arm*' --exclude='node_modules/@node-llama-cpp/linux-x64-cuda-ext' \
  --exclude='node_modules/@node-llama-cpp/linux-x64-vulkan' --exclude='node_modules/@node-llama-cpp/linux-x64' node_modules | xz -T0 -6 >.dev/llamacpp-js.tar.xz
ls -l .dev/llamacpp-*
