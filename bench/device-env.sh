# Sourced at the start of every device call: unpacks what travels in carried,
# git-ignored folders (.gl: Vulkan loader debs; .dev: runtimes, packages, eval data).
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
[ -f "$VK_DRIVER_FILES" ] || unset VK_DRIVER_FILES
mkdir -p /tmp/kvc-bin
[ -x /tmp/kvc-bin/bun ] || { [ -f .dev/bun.xz ] && xz -dc .dev/bun.xz > /tmp/kvc-bin/bun && chmod +x /tmp/kvc-bin/bun; }
[ -x /tmp/kvc-bin/deno ] || { [ -f .dev/deno.xz ] && xz -dc .dev/deno.xz > /tmp/kvc-bin/deno && chmod +x /tmp/kvc-bin/deno; }
export PATH=/tmp/kvc-bin:$PATH
[ -d node_modules/bun-webgpu ] || { [ -f .dev/nm.tar.xz ] && tar xJf .dev/nm.tar.xz; }
export KVC_SHARED=$PWD/.dev/shared
