#!/usr/bin/env bash
# Every C file in the repository is clang-formatted (.clang-format).
set -euo pipefail
cd "${TG_SRC_DIR:-$(dirname "$0")/../..}"
mapfile -t files < <(git ls-files 'src/*.[ch]' 'tests/*.[ch]' 'fuzz/*.[ch]' 2>/dev/null || true)
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(find src tests fuzz -name '*.[ch]' 2>/dev/null)
fi
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f (run: make format)"
    bad=1
  fi
done
exit $bad
