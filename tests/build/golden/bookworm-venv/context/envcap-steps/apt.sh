# apt.sh PINS_FILE: install every pinned Debian package (name=version, one a line).
source "$(dirname "$0")/prologue.sh"
pins_file=$1
export DEBIAN_FRONTEND=noninteractive
mapfile -t pins < <(grep -v -e '^#' -e '^$' "$pins_file")
apt-get "${envcap_apt_ca[@]}" update -q
apt-get "${envcap_apt_ca[@]}" install -y -q --no-install-recommends --allow-downgrades -- "${pins[@]}"
apt-get clean
# Logs, caches and backups that record when the build ran.
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
    /var/log/alternatives.log /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old \
    /var/lib/dpkg/*-old
