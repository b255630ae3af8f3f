#!/usr/bin/env bash
# Functions that invite overflows or silent parse errors are not used
# (in the spirit of curl's checksrc). Use snprintf, strtoull with checks,
# strtok_r, mkstemp.
set -euo pipefail
cd "${TG_SRC_DIR:-$(dirname "$0")/../..}"
pattern='(^|[^_[:alnum:]])(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll|atof|strtok|tmpnam|mktemp|alloca)[[:space:]]*\('
if grep -rnE "$pattern" --include='*.c' --include='*.h' src tests fuzz 2>/dev/null |
   grep -vE '^\S+:[0-9]+:\s*(/\*|\*)'; then
  echo "banned function used (see above)"
  exit 1
fi
echo "no banned functions"
