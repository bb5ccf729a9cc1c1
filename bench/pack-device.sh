#!/usr/bin/env bash
# Prepares, on this machine, what a device call carries in git-ignored folders:
#   .dev/bun.xz     the bun binary this machine runs (xz -9e, ~38 MB)
#   .dev/deno.xz    the deno binary (~30 MB)
#   .dev/nm.tar.xz  node_modules with production dependencies only (bun-webgpu's Dawn library included)
#   .dev/commit     the commit the benchmark records name
#   .dev/clean.tar.xz  that commit's tree (git archive HEAD), run by bench/run-snapshot.sh
#   .dev/snap-C.tar.xz  with `snap REV...`: each commit's tree, run one after another by bench/run-commits.sh
#   .gl/*.deb       the Vulkan loader (libvulkan1, amd64) for a GPU host without one
# then prints each call's carry list and checks it against the 64 MiB a call may carry.
# Both runtimes together are over that limit, so Bun and Deno go in separate calls.
#
#   bash bench/pack-device.sh          # everything (runtimes are re-packed only when they changed)
#   bash bench/pack-device.sh commit   # only refresh .dev/commit
#   bash bench/pack-device.sh snap 45dec48 HEAD   # only the snapshots of those commits (old ones removed)
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=$((64 * 1024 * 1024))

for d in .gl .dev; do
  git check-ignore -q "$d/probe" || { echo "pack-device: $d/ is not git-ignored (add /$d/ to .gitignore)" >&2; exit 1; }
done
mkdir -p .dev .gl
if [ "${1:-}" = snap ]; then
  shift
  rm -f .dev/snap-*.tar.xz
  # what a benchmark runs (synthetic weights: no models, tests or filed results), so that
  # two snapshots fit one call beside the runtimes
  for rev in "$@"; do
    git archive "$rev" -- . ':!models' ':!tests' ':!bench/results' ':!fixtures' | xz -T0 -6 >".dev/snap-$(git rev-parse --short=12 "$rev").tar.xz"
  done
  ls -l .dev/snap-*.tar.xz
  exit 0
fi
git rev-parse --short=12 HEAD >.dev/commit
# the committed tree, for bench/run-snapshot.sh: figures of HEAD, whatever the tree holds
git archive HEAD | xz -T0 -6 >.dev/clean.tar.xz
[ "${1:-}" = commit ] && { echo "commit $(cat .dev/commit) (and .dev/clean.tar.xz)"; exit 0; }

# runtimes: xz of the binary, redone only when the binary is newer than its archive
pack_bin() {
  local name=$1 src
  src=$(readlink -f "$(command -v "$name")") || { echo "pack-device: $name is not installed (bash scripts/setup.sh)" >&2; exit 1; }
  if [ ! -s ".dev/$name.xz" ] || [ "$src" -nt ".dev/$name.xz" ]; then
    echo "packing $name $("$name" --version | head -1) from $src"
    xz -T0 -9e -c "$src" >".dev/$name.xz.part" && mv ".dev/$name.xz.part" ".dev/$name.xz"
  fi
}
pack_bin bun
pack_bin deno

# production node_modules from the lockfile, installed apart so dev packages stay out
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r package.json bun.lock patches "$tmp/"
(cd "$tmp" && bun install --production --frozen-lockfile >/dev/null)
# dawn.node ships a build per platform: the GPU host needs linux-x64 alone (~100 MB less)
find "$tmp/node_modules/webgpu/dist" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
tar -C "$tmp" -cf - node_modules | xz -T0 -9 >.dev/nm.tar.xz.part && mv .dev/nm.tar.xz.part .dev/nm.tar.xz

# the Vulkan loader, amd64 whatever this machine is
mkdir -p /tmp/amd64/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
# shellcheck disable=SC2086
apt-get $o update >/dev/null
rm -f .gl/*.deb
# shellcheck disable=SC2086
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)

# what travels: the work tree (tracked and untracked-not-ignored files) plus the carried paths
tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
size() { du -cb "$@" | tail -1 | cut -f1; }
check() {
  local label=$1; shift
  local total=$((tree + $(size "$@")))
  printf '%-6s carry [%s]: %d MiB with the work tree (limit 64 MiB)%s\n' "$label" "$(printf '"%s", ' "$@" | sed 's/, $//')" $((total / 1048576)) \
    "$([ $total -lt $LIMIT ] || echo '  -- OVER THE LIMIT')"
}
echo "work tree: $((tree / 1048576)) MiB"
ls -l .dev .gl | sed 's/^/  /'
check bun .gl .dev/bun.xz .dev/nm.tar.xz .dev/commit
check deno .gl .dev/deno.xz .dev/nm.tar.xz .dev/commit
