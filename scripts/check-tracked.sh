#!/usr/bin/env bash
# Fails when git tracks a binary file or a very large one: build outputs
# (a `go build` in the root writes ./portvakt), core dumps and archives do
# not belong in the repository. Test fixtures that must be binary are made
# by the tests (devca, softhsm), not checked in.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
# git's own text detection: "i/-text" is a file whose index content is binary.
while IFS=$'\t' read -r info path; do
	if [[ ${info%% *} == i/-text ]]; then
		echo "tracked binary file: $path (remove it with git rm --cached and ignore it in .gitignore)" >&2
		status=1
	fi
done < <(git ls-files --eol)
# Large text files are generated output too (the largest source file is
# well under 100 KiB).
while IFS= read -r -d '' path; do
	[[ -f $path ]] || continue
	size=$(stat -c %s -- "$path")
	if ((size > 1048576)); then
		echo "tracked file over 1 MiB: $path ($size bytes): build output? remove it with git rm --cached" >&2
		status=1
	fi
done < <(git ls-files -z)
exit "$status"
