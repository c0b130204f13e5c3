#!/usr/bin/env bash
# Build (or reuse) the execution environment: `ansible-builder build` from
# meta/execution-environment.yml, with this checkout's collection installed in the image.
#   ee.sh                  prints the image tag (gradual/rollout-ee:<hash>, also tagged :latest)
# EE_BASE_IMAGE   the base image, passed as --build-arg EE_BASE_IMAGE (default: the harness's own
#                 gradual/debian12-systemd:latest, which `make image` builds; no registry needed)
# EE_IMAGE        the image name (default gradual/rollout-ee)
# EE_NO_CACHE=1   build with no Docker layer cache (a cold build, to measure it), even if tagged
#
# The collection's tarball (`ansible-galaxy collection build`) goes in as an additional build file
# and is installed with --offline --no-deps; the community collections come from the `ansible`
# PyPI package (see meta/execution-environment.yml). The tag carries a content hash of everything
# that goes into the image (this script, the definition and its files, the collection's content,
# the base image's id, ansible-builder's version), so an unchanged EE is reused in seconds. The
# image is tagged only once complete: a failed build leaves no tag behind.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
export PATH="$GR_ROOT/.venv/bin:$PATH"

EE_IMAGE=${EE_IMAGE:-gradual/rollout-ee}
BASE=${EE_BASE_IMAGE:-$GR_IMAGE:latest}
DEF_FILES=(execution-environment.yml ee-requirements.txt ee-bindep.txt)

need_cmd docker "apt-get install docker.io"
if [ ! -x .venv/bin/ansible-builder ] || [ ! -x .venv/bin/ansible-galaxy ]; then die "no .venv with ansible-builder: run make venv"; fi
docker info >/dev/null 2>&1 || die "no Docker engine answers: run make docker (tests/harness/docker-up.sh)"

# The base image must be in the local store: this machine reaches no registry. One from a
# registry is pulled first (docker pull), when the registry is in reach.
if ! base_id=$(docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null); then
  if [ "$BASE" != "$GR_IMAGE:latest" ] && timeout 120 docker pull -q "$BASE" >/dev/null 2>&1; then
    base_id=$(docker image inspect -f '{{.Id}}' "$BASE")
  else
    die "no base image: set EE_BASE_IMAGE / --build-arg EE_BASE_IMAGE=... ($BASE is not in the local image store; \`make image\` builds $GR_IMAGE:latest)"
  fi
fi

# ansible-builder's scripts install system packages with $PKGMGR: apt-get on Debian (the
# definition's default), dnf or microdnf on an RPM base.
pkgmgr=$(docker run --rm --entrypoint /bin/sh "$BASE" -c \
           'for p in apt-get microdnf dnf; do command -v "$p" && exit 0; done; exit 1' 2>/dev/null) \
  || die "the base image $BASE has none of apt-get, microdnf, dnf (or no /bin/sh): ansible-builder cannot install packages in it"

work=$(mktemp -d /var/tmp/gradual-ee.XXXXXX)
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT
mkdir -p "$work/def"
for f in "${DEF_FILES[@]}"; do cp "meta/$f" "$work/def/$f"; done

# The collection as `ansible-galaxy collection build` packs it (galaxy.yml's build_ignore applies).
ansible-galaxy collection build --force --output-path "$work/def" . >"$work/galaxy-build.log" 2>&1 \
  || { tail -n 5 "$work/galaxy-build.log" >&2; die "ansible-galaxy collection build failed"; }
tarball=$(find "$work/def" -maxdepth 1 -name 'gradual-rollout-*.tar.gz' | head -n 1)
[ -n "$tarball" ] || die "ansible-galaxy collection build wrote no gradual-rollout-*.tar.gz"
mv "$tarball" "$work/def/gradual-rollout.tar.gz"

# Content hash: the tarball's bytes carry timestamps, its extracted content does not.
builder_version=$(ansible-builder --version)
HASH=$( { cat "$0"; for f in "${DEF_FILES[@]}"; do cat "meta/$f"; done
          tar -xOzf "$work/def/gradual-rollout.tar.gz" | sha256sum
          echo "$base_id $pkgmgr $builder_version"; } | sha256sum | cut -c1-12)
TAG="$EE_IMAGE:$HASH"

if [ "${EE_NO_CACHE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  docker tag "$TAG" "$EE_IMAGE:latest"
  say "reusing $TAG (base $BASE)"
  echo "$TAG"
  exit 0
fi

need_disk 4000 /var/lib/docker
log="$GR_STATE/ee-build.log"
args=(build -f "$work/def/execution-environment.yml" -c "$work/context" -t "$TAG"
      --container-runtime docker -v 3 --build-arg "EE_BASE_IMAGE=$BASE"
      --extra-build-cli-args=--force-rm)
[ "$pkgmgr" = /usr/bin/apt-get ] || args+=(--build-arg "PKGMGR=$pkgmgr")
[ "${EE_NO_CACHE:-0}" != 1 ] || args+=(--no-cache)
say "building $TAG from $BASE with ansible-builder (first time: several minutes; log: $log)"
start=$(date +%s)
if ! ansible-builder "${args[@]}" >"$log" 2>&1; then
  # docker tags only a complete build; remove the tag anyway in case a later step failed after it.
  docker rmi "$TAG" >/dev/null 2>&1 || true
  grep -E "^(ERROR|E:)|error:|Error:|returned a non-zero code" "$log" | tail -n 8 >&2 || tail -n 15 "$log" >&2
  die "ansible-builder build failed (full log: $log)"
fi
docker tag "$TAG" "$EE_IMAGE:latest"
# Older builds: each holds its own final-stage layers (hundreds of MB); keep only this one.
# (grep finds none on a machine's first build: not a failure under pipefail)
docker images "$EE_IMAGE" --format '{{.Tag}}' | { grep -vxE "latest|$HASH" || true; } | while read -r old; do
  docker rmi "$EE_IMAGE:$old" >/dev/null 2>&1 || true
done
size=$(docker image inspect -f '{{.Size}}' "$TAG")
say "built $TAG in $(( $(date +%s) - start ))s ($(( size / 1000000 )) MB, base $BASE)"
echo "$TAG"
