#!/bin/sh
# func_length.sh MAX ALLOWLIST FILE...: fails when a function in FILE... is
# longer than MAX lines (from its opening to its closing brace) and is not
# named in ALLOWLIST ("file function  # why" per line: the faithful ports of
# the original's algorithms, which stay one piece so they can be read
# against docs/htmengine.md). The project's style puts a function's braces
# alone in column 0, which is what this reads; a line "name(" before the
# brace names the function.
set -eu
[ $# -ge 3 ] || { echo "usage: func_length.sh MAX ALLOWLIST FILE..." >&2; exit 2; }
max=$1 allow=$2
shift 2
awk -v max="$max" -v allow="$allow" '
BEGIN {
    while ((getline l < allow) > 0) {
        sub(/#.*/, "", l)
        if (split(l, a, " ") >= 2) ok[a[1] " " a[2]] = 1
    }
}
FNR == 1 { name = ""; start = 0; f = FILENAME; sub(/.*\//, "", f) }
start == 0 && /^[A-Za-z_].*[A-Za-z_0-9]\(/ {
    s = $0; sub(/\(.*/, "", s); n = split(s, w, /[ *]+/); name = w[n]
}
/^\{/ && start == 0 { start = FNR; next }
/^\}/ && start > 0 {
    len = FNR - start + 1
    if (len > max) {
        if ((f " " name) in ok) printf "allowed: %s %s %d lines\n", f, name, len
        else { printf "too long: %s:%d %s %d lines (max %d)\n", f, start, name, len, max; bad++ }
    }
    total++; start = 0; name = ""
}
END {
    printf "func_length: %d functions, %d over %d lines and not allowed\n", total, bad, max
    exit bad > 0
}' "$@"
