#!/usr/bin/env bash
# Every C file in the repository is clang-formatted (.clang-format).
set -euo pipefail
cd "${TG_SRC_DIR:-$(dirname "$0")/../..}"
mapfile -t files < <(git ls-files 'src/*.[ch]' 'tests/*.[ch]' 'fuzz/*.[ch]' 2>/dev/null || true)
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(find src tests fuzz -name '*.[ch]' 2>/dev/null)
fi
# One clang-format for every file (a process per file took minutes on a
# loaded machine); it names each file that is not formatted.
out=$(clang-format --dry-run -Werror "${files[@]}" 2>&1) && exit 0
printf '%s\n' "$out" | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/not formatted: \1 (run: make format)/p' | sort -u
exit 1
