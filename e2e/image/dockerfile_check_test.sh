#!/usr/bin/env bash
# Static check of the Dockerfile (ctest: dockerfile_check_test), for runs
# that do not build the image (e2e/image/build-image.sh does it for real):
#  - every COPY/ADD source from the build context exists and is not
#    excluded by .dockerignore, and every --from names an earlier stage;
#  - the repository scripts the build stage runs exist and are executable;
#  - every package in RUNTIME_LIBRARIES is a package of this Debian release.
# Exit codes: 0 ok, 1 a check failed (each failure is named).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# Join continuation lines, drop comments.
mapfile -t lines < <(sed -e '/^[[:space:]]*#/d' Dockerfile | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta')
mapfile -t ignores < <(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' .dockerignore)
ignored() {
  local p=$1 pat
  for pat in "${ignores[@]}"; do
    pat=${pat%/}
    # shellcheck disable=SC2053
    [[ $p == $pat || $p == $pat/* ]] && return 0
  done
  return 1
}
stages=()
for line in "${lines[@]}"; do
  read -r -a w <<<"$line"
  ((${#w[@]})) || continue
  case ${w[0]^^} in
    FROM)
      ((${#w[@]} >= 4)) && [ "${w[2]^^}" = AS ] && stages+=("${w[3]}") ;;
    COPY | ADD)
      args=("${w[@]:1}")
      from=
      while [[ ${args[0]} == --* ]]; do
        [[ ${args[0]} == --from=* ]] && from=${args[0]#--from=}
        args=("${args[@]:1}")
      done
      if [ -n "$from" ]; then
        printf '%s\n' "${stages[@]}" | grep -qxF "$from" || fail "COPY --from=$from: no earlier stage named $from"
        continue
      fi
      for src in "${args[@]:0:${#args[@]}-1}"; do
        [ "$src" = . ] && continue
        [ -e "$src" ] || fail "COPY source '$src' does not exist in the build context"
        ignored "$src" && fail "COPY source '$src' is excluded by .dockerignore"
      done
      ;;
    RUN)
      for s in $(grep -oE 'scripts/[A-Za-z0-9_.-]+\.sh' <<<"$line" | sort -u); do
        [ -x "$s" ] || fail "RUN uses $s, which is missing or not executable"
      done
      ;;
  esac
done

pkgs=$(sed -n '/^ARG RUNTIME_LIBRARIES="/,/"/p' Dockerfile |
  sed -e 's/^ARG RUNTIME_LIBRARIES="//' -e 's/["\\]//g' | tr ' ' '\n' | grep -v '^$' || true)
[ -n "$pkgs" ] || fail "no ARG RUNTIME_LIBRARIES list in the Dockerfile"
# One apt-cache call (each call loads the whole cache); it exits 0 even when
# some names are unknown, so compare the names it knows with the list.
# shellcheck disable=SC2086
known=$(apt-cache show --no-all-versions $pkgs 2>/dev/null | sed -n 's/^Package: //p' | sort -u)
for p in $(comm -23 <(sort -u <<<"$pkgs") <(echo "$known")); do
  fail "RUNTIME_LIBRARIES: '$p' is not a package here"
done

if ((failures)); then echo "dockerfile_check_test: $failures failure(s)" >&2; exit 1; fi
echo "dockerfile_check_test: ok ($(wc -w <<<"$pkgs") runtime packages)"
