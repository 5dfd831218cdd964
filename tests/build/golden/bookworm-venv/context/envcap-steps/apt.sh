# apt.sh PINS_FILE [ARCHIVE_SOURCES]: install every pinned Debian package (name=version,
# one a line). When the mirror lacks a pinned version, the dated archive (a deb822
# sources file, apt-snapshot.sources) is added for this step only, and apt installs
# from both; the image keeps the base's own sources.
source "$(dirname "$0")/prologue.sh"
pins_file=$1 archive=${2:-}
export DEBIAN_FRONTEND=noninteractive
mapfile -t pins < <(grep -v -e '^#' -e '^$' "$pins_file")
install=(apt-get "${envcap_apt_ca[@]}" install -y -q --no-install-recommends --allow-downgrades)
apt-get "${envcap_apt_ca[@]}" update -q
if [ -n "$archive" ] && ! "${install[@]}" --simulate -- "${pins[@]}" >"$envcap_private/simulate.log" 2>&1; then
    echo "envcap: the mirror lacks what the pins need:" >&2
    grep -e '^E:' -e 'but it is not' -e 'but .* is to be installed' "$envcap_private/simulate.log" |
        sed 's/^/envcap:   /' >&2 || true
    echo "envcap: adding the dated archive $(grep -m1 '^URIs:' "$archive" | cut -d' ' -f2-)" >&2
    cp "$archive" /etc/apt/sources.list.d/envcap-archive.sources
    apt-get "${envcap_apt_ca[@]}" update -q
fi
"${install[@]}" -- "${pins[@]}"
rm -f /etc/apt/sources.list.d/envcap-archive.sources
apt-get clean
# Logs, caches and backups that record when the build ran.
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
    /var/log/alternatives.log /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old \
    /var/lib/dpkg/*-old
