#!/usr/bin/env bash
# Run every benchmark: bench/<name>/run writes bench/results/<name>.json.
#   bench.sh [NAME...]   (default: all)
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT" || exit 1
export PATH="$GR_ROOT/.venv/bin:$PATH"
export GR_OWNER="harness-$$"   # docker-down.sh stops only an engine started under this owner
"$GR_ROOT/tests/harness/docker-up.sh"
trap '"$GR_ROOT/tests/harness/docker-down.sh" || true' EXIT
mkdir -p bench/results
names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
  mapfile -t names < <(find bench -mindepth 2 -maxdepth 2 -name run -perm -u+x -printf '%h\n' | xargs -r -n1 basename | sort)
fi
rc=0
for n in "${names[@]}"; do
  [ -x "bench/$n/run" ] || die "no benchmark bench/$n/run"
  phase "bench:$n" "bench/$n/run" || rc=1
done
exit "$rc"
