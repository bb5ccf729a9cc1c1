# Sourced at the start of every device call: unpacks what travels in carried,
# git-ignored folders (.gl: Vulkan loader debs; .dev: runtimes, packages, eval data).
# the loader and glvnd (the NVIDIA ICD, libGLX_nvidia, needs libGLdispatch): always
# unpacked, since a host may have libvulkan without glvnd
for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
[ -f "$VK_DRIVER_FILES" ] || unset VK_DRIVER_FILES
mkdir -p /tmp/kvc-bin
# unpacked beside, then moved: a call cut short never leaves half a binary behind
for b in bun deno; do
  [ -x /tmp/kvc-bin/$b ] || { [ -f .dev/$b.xz ] && xz -dc .dev/$b.xz > /tmp/kvc-bin/$b.part && chmod +x /tmp/kvc-bin/$b.part && mv /tmp/kvc-bin/$b.part /tmp/kvc-bin/$b; }
done
export PATH=/tmp/kvc-bin:$PATH
[ -d node_modules/bun-webgpu ] && [ -d node_modules/webgpu ] || { [ -f .dev/nm.tar.xz ] && tar xJf .dev/nm.tar.xz; }
# onnxruntime-web, onnx-proto and Dawn's Node binding for bench/ort (bench/ort/pack.sh)
[ -d node_modules/onnxruntime-web ] || { [ -f .dev/ort.tar.xz ] && tar xJf .dev/ort.tar.xz; }
[ -d node_modules/onnxruntime-node ] || { [ -f .dev/ort-node.tar.xz ] && tar xJf .dev/ort-node.tar.xz; }
export KVC_SHARED=$PWD/.dev/shared
