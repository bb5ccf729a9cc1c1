#!/usr/bin/env bash
# Packs what the onnxruntime-web peer benchmark (bench/ort/ort-bench.ts) needs on the GPU
# host beyond bench/pack-device.sh's production node_modules, as .dev/ort.tar.xz:
#   onnxruntime-web (the WebGPU bundle and its wasm only), onnx-proto and protobufjs (the
#   graph is built on the host). Dawn's Node binding comes with .dev/nm.tar.xz.
# With "node": .dev/ort-node.tar.xz instead, onnxruntime-node (its linux-x64 library, with
# its own Dawn and WebGPU provider) for `--gpu ort-node`; too big to travel with the rest,
# it goes in a second call while the machine is warm.
# bench/device-env.sh unpacks them into node_modules. Prints the carry list and its size.
#
#   bash bench/ort/pack.sh [node]
set -euo pipefail
cd "$(dirname "$0")/../.."
ORT_NODE_VERSION=1.30.0
LIMIT=$((64 * 1024 * 1024))
[ -d node_modules/onnxruntime-web ] || bun install --frozen-lockfile >/dev/null
mkdir -p .dev
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')

if [ "${1:-}" = node ]; then
  # its install script (CUDA provider downloads) is not run: bun leaves it untrusted
  (cd "$tmp" && echo '{"name":"ort-node","private":true}' >package.json && bun add "onnxruntime-node@$ORT_NODE_VERSION" >/dev/null)
  o=node_modules/onnxruntime-node
  mkdir -p "$tmp/pack/$o/bin/napi-v6/linux"
  cp -r "$tmp/$o/package.json" "$tmp/$o/dist" "$tmp/pack/$o/"
  cp -r "$tmp/$o/bin/napi-v6/linux/x64" "$tmp/pack/$o/bin/napi-v6/linux/"
  cp -r "$tmp/node_modules/onnxruntime-common" "$tmp/pack/node_modules/"
  tar -C "$tmp/pack" -cf - node_modules | xz -T0 -9 >.dev/ort-node.tar.xz.part && mv .dev/ort-node.tar.xz.part .dev/ort-node.tar.xz
  total=$((tree + $(stat -c %s .dev/ort-node.tar.xz)))
  echo "carry [\".dev/ort-node.tar.xz\", \".dev/commit\"]: $((total / 1048576)) MiB with the work tree (limit 64 MiB); a warm machine already holds bun and node_modules"
  exit 0
fi
ort=node_modules/onnxruntime-web
mkdir -p "$tmp/pack/$ort/dist"
cp "$ort/package.json" "$ort/types.d.ts" "$tmp/pack/$ort/"
cp "$ort/dist/ort.webgpu.bundle.min.mjs" "$ort/dist/ort-wasm-simd-threaded.asyncify.mjs" "$ort/dist/ort-wasm-simd-threaded.asyncify.wasm" "$tmp/pack/$ort/dist/"
# the bundle needs no other package; onnx-proto needs protobufjs/minimal (not its CLI or dist)
cp -r node_modules/onnx-proto node_modules/@protobufjs node_modules/long "$tmp/pack/node_modules/"
mkdir -p "$tmp/pack/node_modules/protobufjs"
cp -r node_modules/protobufjs/{package.json,minimal.js,index.js,light.js,src} "$tmp/pack/node_modules/protobufjs/"
tar -C "$tmp/pack" -cf - node_modules | xz -T0 -9 >.dev/ort.tar.xz.part && mv .dev/ort.tar.xz.part .dev/ort.tar.xz

carry=(.gl .dev/bun.xz .dev/nm.tar.xz .dev/commit .dev/ort.tar.xz)
have=(); for p in "${carry[@]}"; do [ -e "$p" ] && have+=("$p"); done
total=$((tree + $(du -cb "${have[@]}" | tail -1 | cut -f1)))
echo ".dev/ort.tar.xz: $(($(stat -c %s .dev/ort.tar.xz) / 1048576)) MiB"
printf 'carry [%s]: %d MiB with the work tree (limit 64 MiB)%s\n' "$(printf '"%s", ' "${carry[@]}" | sed 's/, $//')" $((total / 1048576)) \
  "$([ $total -lt $LIMIT ] || echo '  -- OVER THE LIMIT: carry .dev/ort.tar.xz in a second call while the machine is warm')"
for p in "${carry[@]}"; do [ -e "$p" ] || echo "missing $p: run bash bench/pack-device.sh first"; done
