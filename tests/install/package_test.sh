#!/usr/bin/env bash
# package_test.sh SOURCE_DIR WORK_DIR: configures WORK_DIR as a package build
# (prefix /usr, Release, no tests), builds it, runs `cpack -G DEB`, and checks
# the .deb: its control fields (dpkg-deb -I), that every shared library the
# programs need comes from a package in Depends:, its files in the Debian
# places, the config as a conffile, maintainer scripts that start nothing,
# and that the extracted programs run.
set -euo pipefail
src=$1
work=$2
fail() { echo "package_test: FAIL: $*" >&2; exit 1; }

cmake -S "$src" -B "$work" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release \
    -DANOMALYD_TESTS=OFF -DANOMALYD_SANITIZE=OFF >"$work.configure.log" 2>&1 ||
    { cat "$work.configure.log"; fail "configure"; }
cmake --build "$work" -j2 >"$work.build.log" 2>&1 || { tail -30 "$work.build.log"; fail "build"; }
rm -f "$work"/*.deb
(cd "$work" && cpack -G DEB) >"$work.cpack.log" 2>&1 || { cat "$work.cpack.log"; fail "cpack"; }
deb=$(ls "$work"/anomalyd_*.deb)
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$work/CMakeCache.txt")

field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = anomalyd ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version), project $version"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture: $(field Architecture)"
[ -n "$(field Maintainer)" ] && [ -n "$(field Description)" ] || fail "no Maintainer/Description"
depends=$(field Depends)
dpkg-deb -I "$deb" >/dev/null || fail "dpkg-deb -I"

# The package owning a library file (merged /usr: dpkg may record the file
# under /lib or /usr/lib, and ldconfig may name either, or a symlink).
owner() {
    local c real
    real=$(readlink -f "$1")
    for c in "$1" "$real" "${1/#\/lib\//\/usr\/lib\/}" "${real/#\/usr\/lib\//\/lib\/}"; do
        if dpkg -S "$c" >"$ctl/owner" 2>/dev/null; then
            awk -F: 'NR == 1 {print $1}' "$ctl/owner"
            return 0
        fi
    done
    return 1
}
ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)   # /sbin is not on every PATH
ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT

# Every library the programs load comes from a declared package.
for p in anomalyd anomalyctl; do
    for lib in $(objdump -p "$work/$p" | awk '/NEEDED/ {print $2}'); do
        path=$("$ldconfig" -p | awk -v l="$lib" '$1 == l {print $NF}')
        path=${path%%$'\n'*}
        [ -n "$path" ] || fail "$p needs $lib, not found by ldconfig"
        pkg=$(owner "$path") || fail "$lib ($path) belongs to no package"
        echo ", $depends," | grep -Eq "[ ,]$pkg( \\([^)]*\\))?," ||
            fail "$p needs $lib from $pkg, which Depends: ($depends) does not name"
    done
done

# Files where Debian puts them; the config is a conffile.
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/anomalyd ./usr/bin/anomalyctl ./etc/anomalyd/anomalyd.conf \
    ./lib/systemd/system/anomalyd.service ./usr/share/man/man8/anomalyd.8 \
    ./usr/share/man/man1/anomalyctl.1 ./usr/share/doc/anomalyd/operations.md; do
    echo "$contents" | grep -qx "$f" || fail "$f not in the package"
done
dpkg-deb -e "$deb" "$ctl/DEBIAN"
grep -qx /etc/anomalyd/anomalyd.conf "$ctl/DEBIAN/conffiles" || fail "config is not a conffile"
# Installing starts nothing: no maintainer script enables or starts a service.
for s in preinst postinst prerm postrm; do
    [ -f "$ctl/DEBIAN/$s" ] || continue
    if grep -v '^[[:space:]]*#' "$ctl/DEBIAN/$s" | grep -Eq 'systemctl|deb-systemd|invoke-rc.d|service '; then
        fail "$s enables or starts something"
    fi
done

# The packaged programs and config work once extracted.
dpkg-deb -x "$deb" "$ctl/root"
grep -q '^ExecStart=/usr/bin/anomalyd --config /etc/anomalyd/anomalyd.conf' \
    "$ctl/root/lib/systemd/system/anomalyd.service" || fail "unit ExecStart"
"$ctl/root/usr/bin/anomalyd" --version | grep -q "^anomalyd $version" || fail "anomalyd --version"
"$ctl/root/usr/bin/anomalyd" --config "$ctl/root/etc/anomalyd/anomalyd.conf" --check-config ||
    fail "packaged config does not check"
echo "package_test: ok ($(basename "$deb"); Depends: $depends)"
