#!/bin/sh
# layers.sh OBJ...: fails when the source files behind the object files
# call each other in a cycle (a.c uses a function of b.c and b.c, directly
# or through others, one of a.c). Lower layers must take callbacks instead
# of calling up (docs/architecture.md). Edges come from the symbols each
# object leaves undefined and the ones another object defines (nm), so the
# check sees real calls and data references, not #includes.
set -eu
# CTest passes $<TARGET_OBJECTS:...> as one ;-separated argument: split it
objs=$(printf '%s\n' "$@" | tr ';' '\n' | grep -v '^$' || true)
set -f
# shellcheck disable=SC2086
set -- $objs
set +f
[ $# -ge 2 ] || { echo "layers: need at least two object files, got $#" >&2; exit 2; }
for o in "$@"; do [ -r "$o" ] || { echo "layers: cannot read $o" >&2; exit 2; }; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for o in "$@"; do
    f=$(basename "$o" .o)
    nm --defined-only -g "$o" | awk -v f="$f" 'NF == 3 && $2 ~ /^[TDBRC]$/ {print $3, f}'
done | sort -k1,1 >"$tmp/defs"
for o in "$@"; do
    f=$(basename "$o" .o)
    nm -u "$o" | awk -v f="$f" '{print $NF, f}'
done | sort -k1,1 >"$tmp/uses"
# "user definer" pairs, self-references dropped
join "$tmp/uses" "$tmp/defs" | awk '$2 != $3 {print $2, $3}' | sort -u >"$tmp/edges"
n=$(wc -l <"$tmp/edges")
# a library whose files call nothing of each other means nm read nothing
[ "$n" -gt 0 ] || { echo "layers: no call edge found between $# objects (nm failed?)" >&2; exit 2; }
# tsort reports every cycle it finds on stderr ("tsort: -: input contains a loop:")
if ! tsort "$tmp/edges" >/dev/null 2>"$tmp/loops"; then
    echo "layers: the source files call each other in a cycle:" >&2
    sed 's/^/  /' "$tmp/loops" >&2
    echo "layers: edges (user -> definer) on the cycle's files:" >&2
    grep -o '[A-Za-z0-9_.]*\.c' "$tmp/loops" | sort -u >"$tmp/onloop"
    grep -F -f "$tmp/onloop" "$tmp/edges" | awk 'NR==FNR {on[$1]=1; next} ($1 in on) && ($2 in on) {print "  " $1 " -> " $2}' "$tmp/onloop" - >&2
    exit 1
fi
echo "layers: $# objects, $n call edges between files, no cycle"
