#!/usr/bin/env bash
# Fails when the checked-in generated code under proto/ is stale: runs
# scripts/generate.sh, then requires `git status` to show no change under
# proto/ (modified, new or deleted files), and no generated file whose .proto
# is gone. CI runs this; run it before you commit a change to the API.
# Runs from any directory; it leaves the regenerated files in place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	echo "check-generated: $root is not a git work tree" >&2
	exit 1
fi

# What the files under proto/ held before generating, to tell the files that
# generation changed from those that were already uncommitted.
snapshot() {
	find proto -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
}
before="$(snapshot)"

"$root/scripts/generate.sh"

after="$(snapshot)"
changed="$(diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed -n 's/^[<>] [0-9a-f]\{64\}  //p' | LC_ALL=C sort -u || true)"
status="$(git status --porcelain --untracked-files=all -- proto)"

# buf generate never deletes: a .pb.go left behind by a removed .proto.
orphans=""
while IFS= read -r -d '' f; do
	src="${f%_grpc.pb.go}"
	src="${src%.pb.go}.proto"
	[[ -f "$src" ]] || orphans+="$f"$'\n'
done < <(find proto -type f -name '*.pb.go' -print0)

if [[ -z "$status" && -z "$orphans" ]]; then
	echo "check-generated: the generated code under proto/ is up to date" >&2
	exit 0
fi

{
	echo "check-generated: FAILED: the generated code under proto/ is stale or not committed."
	if [[ -n "$changed" ]]; then
		echo
		echo "Changed by scripts/generate.sh (stale generated code, or an unformatted .proto):"
		printf '%s\n' "$changed" | sed 's/^/  /'
	fi
	if [[ -n "$status" ]]; then
		echo
		echo "Not committed under proto/ (git status --porcelain):"
		printf '%s\n' "$status" | sed 's/^/  /'
	fi
	if [[ -n "$orphans" ]]; then
		echo
		echo "Generated files whose .proto no longer exists (delete them):"
		printf '%s' "$orphans" | sed 's/^/  /'
	fi
	echo
	echo "Fix: run scripts/generate.sh (make generate) and commit everything under proto/."
	if [[ -n "$changed" ]]; then
		echo
		git --no-pager diff --stat -- proto || true
	fi
} >&2
exit 1
