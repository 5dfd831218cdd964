#!/usr/bin/env bash
# Start, stop and inspect envcap's real container test bed.
#
#   scripts/testbed.sh up      install what is missing, start dockerd and a
#                              registry on 127.0.0.1:5000, build and push the
#                              Debian base images, start a PostgreSQL cluster
#                              of its own on 127.0.0.1:$PG_PORT, write
#                              $ENVCAP_TESTBED_DIR/env
#                              and a one-node Slurm cluster (munged,
#                              slurmctld, slurmd) on 127.0.0.1
#   scripts/testbed.sh down    stop the registry, dockerd, PostgreSQL and
#                              Slurm that `up` started
#   scripts/testbed.sh status  say what is running
#
# It targets a fresh Debian 12 machine, run as root, that can reach only
# Debian's package mirror and PyPI (no Docker Hub). It never creates a
# private-range network: dockerd runs without a bridge, and every container
# and build must use --network host.
#
# Environment:
#   ENVCAP_TESTBED_DIR     state, logs, registry storage and the rootfs cache
#                          (default /var/tmp/envcap-testbed)
#   ENVCAP_TESTBED_MIRROR  Debian mirror URL; by default it is read from the
#                          host's apt sources.
set -euo pipefail
# Let the ERR trap below fire inside functions and subshells too.
set -E

TESTBED_DIR=${ENVCAP_TESTBED_DIR:-/var/tmp/envcap-testbed}
REGISTRY_ADDR=127.0.0.1:5000
BASE_REPO=envcap-base/debian
SUITES=(bookworm trixie)
# Later tests create virtual environments inside the base images, and fetch
# packages over HTTPS, so these go into the images from the start.
IMAGE_INCLUDE=python3,python3-venv,ca-certificates
# The Debian packages the test bed needs. buildah is cheap to install (about
# 20 MB, its dependencies shared with skopeo) and later reproducible-build
# tests use it.
# postgresql is the shared store's server (envcap[store]); its cluster here is
# the test bed's own, never the package's default one.
HOST_PACKAGES=(docker.io docker-registry debootstrap skopeo buildah
               debian-archive-keyring ca-certificates curl xz-utils postgresql)
# envcap ui's browser tests drive Debian's chromium through Playwright (never a
# browser download of Playwright's own).
HOST_PACKAGES+=(chromium fonts-dejavu-core)
# The local dated apt archive and interpreter builds (envcap's OS rebuild tests) are
# made from Debian packages with dpkg-dev and signed with gnupg.
HOST_PACKAGES+=(dpkg-dev gnupg)
# envcap revalidate submits its jobs to a one-node Slurm cluster (with munge for
# its authentication).
HOST_PACKAGES+=(slurm-wlm munge)
IMAGE_PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

RUN_DIR=$TESTBED_DIR/run
LOG_DIR=$TESTBED_DIR/logs
CACHE_DIR=$TESTBED_DIR/cache
WORK_DIR=$TESTBED_DIR/work
DOCKER_ROOT=$TESTBED_DIR/docker
REGISTRY_DIR=$TESTBED_DIR/registry
DOCKERD_PIDFILE=$RUN_DIR/dockerd.pid
REGISTRY_PIDFILE=$RUN_DIR/registry.pid
ENV_FILE=$TESTBED_DIR/env
PG_DIR=$TESTBED_DIR/postgres
PG_PORT=${ENVCAP_TESTBED_PG_PORT:-55432}
PG_USER=envcap
# A static file server of the test bed's own: a dated apt archive that holds a version
# the base images' mirror lacks, and CPython builds in python-build-standalone's layout
# with a uv download list of their own.
FILES_DIR=$TESTBED_DIR/files
FILES_ADDR=127.0.0.1:5080
FILES_PIDFILE=$RUN_DIR/files.pid
# The package the archive holds at a version the base images' suite lacks (its
# bookworm-security update), and the interpreter packages the CPython build is made of.
ARCHIVE_PACKAGE=libexpat1
PYTHON_PACKAGES=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11-venv)
SLURM_DIR=$TESTBED_DIR/slurm
SLURM_CONF_FILE=$SLURM_DIR/slurm.conf
SLURM_PARTITION=envcap
SLURMCTLD_PORT=${ENVCAP_TESTBED_SLURMCTLD_PORT:-56817}
SLURMD_PORT=${ENVCAP_TESTBED_SLURMD_PORT:-56818}

export DEBIAN_FRONTEND=noninteractive

log() { printf '[testbed] %s\n' "$*"; }
die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

# An unexpected failure under `set -e` would otherwise exit silently, so say
# where it happened.
trap 'rc=$?; printf "[testbed] ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------------------
# Host packages
# ---------------------------------------------------------------------------

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_host_packages() {
    local missing=() pkg
    for pkg in "${HOST_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "host packages: all present"
        return
    fi
    log "host packages: installing ${missing[*]}"

    # On a systemd machine, installing docker.io would start docker.service
    # with its default bridge (a private-range network), and docker-registry
    # would take port 5000 with its own storage. A policy-rc.d that refuses
    # every start keeps the packages from starting anything; we start our own
    # daemons below. An existing policy-rc.d is left as it is.
    local own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi

    local rc=0
    {
        apt-get update -q &&
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    } >"$LOG_DIR/apt.log" 2>&1 || rc=$?
    if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    if ((rc != 0)); then
        tail -n 20 "$LOG_DIR/apt.log" >&2
        die "apt-get failed (exit $rc); full log in $LOG_DIR/apt.log"
    fi

    # The same reasoning applies at the next boot: keep the packaged services
    # disabled so that only this script starts the daemons.
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now docker.service docker.socket docker-registry.service postgresql.service \
            munge.service slurmctld.service slurmd.service \
            >>"$LOG_DIR/apt.log" 2>&1 || true
    fi
    log "host packages: installed (log in $LOG_DIR/apt.log)"
}

# ---------------------------------------------------------------------------
# Debian mirror, read from the host's apt configuration
# ---------------------------------------------------------------------------

# Print the first URI of an enabled "deb" source for SUITE, from both the
# deb822 (*.sources) and one-line (*.list) formats. Files with other
# suffixes (for example *.disabled) are ignored, as apt ignores them.
find_mirror() {
    local suite=$1 f uri
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
             /etc/apt/sources.list.d/*.list; do
        if [[ ! -f $f ]]; then continue; fi
        if [[ $f == *.sources ]]; then
            # deb822: one stanza per paragraph; comment lines are dropped.
            uri=$(awk -v suite="$suite" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    types = ""; uris = ""; suites = ""; enabled = "yes"
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^[ \t]*#/) continue
                        split($i, kv, ":")
                        key = tolower(kv[1]); val = substr($i, length(kv[1]) + 2)
                        gsub(/^[ \t]+|[ \t]+$/, "", val)
                        if (key == "types") types = val
                        else if (key == "uris") uris = val
                        else if (key == "suites") suites = val
                        else if (key == "enabled") enabled = tolower(val)
                    }
                    gsub(/[ \t]+/, " ", types); gsub(/[ \t]+/, " ", suites)
                    if (enabled == "no") next
                    if ((" " types " ") !~ / deb /) next
                    if ((" " suites " ") !~ (" " suite " ")) next
                    split(uris, u, /[ \t]+/)
                    if (u[1] != "") { print u[1]; exit }
                }' "$f")
        else
            # One-line format: deb [options] URI SUITE COMPONENTS...
            uri=$(awk -v suite="$suite" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit }
                }' "$f")
        fi
        if [[ -n $uri ]]; then
            echo "$uri"
            return
        fi
    done
}

resolve_mirror() {
    if [[ -n ${ENVCAP_TESTBED_MIRROR:-} ]]; then
        MIRROR=$ENVCAP_TESTBED_MIRROR
    else
        local codename
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
        [[ -n $codename ]] || die "cannot read VERSION_CODENAME from /etc/os-release"
        MIRROR=$(find_mirror "$codename")
        [[ -n $MIRROR ]] || die "no 'deb' source for suite '$codename' in the host's apt sources; set ENVCAP_TESTBED_MIRROR"
    fi
    MIRROR=${MIRROR%/}
    log "mirror: $MIRROR"
}

# ---------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------

# True if PIDFILE names a live process whose command name is NAME. Checking
# the name guards against a stale pid file whose number was reused.
pid_alive() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm ]] || return 1
    [[ $(<"/proc/$pid/comm") == "$name" ]]
}

docker_answers() { docker info >/dev/null 2>&1; }
registry_answers() { curl -fsS -o /dev/null --max-time 3 "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }

# Wait up to SECONDS for CHECK to succeed while process PID stays alive.
wait_until_answers() {
    local check=$1 pid=$2 limit=$3 what=$4 logfile=$5 i
    for ((i = 0; i < limit; i++)); do
        if "$check"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2
            die "$what exited during start-up; see $logfile"
        fi
        sleep 1
    done
    "$check" || die "$what did not answer within $limit s; see $logfile"
}

start_dockerd() {
    local pid
    if docker_answers; then
        if pid_alive "$DOCKERD_PIDFILE" dockerd; then
            log "dockerd: already running (pid $(<"$DOCKERD_PIDFILE"))"
        else
            log "dockerd: a daemon not started by this script already answers; using it"
        fi
        return
    fi
    if pid_alive "$DOCKERD_PIDFILE" dockerd; then
        # Ours, but still starting (or stuck): wait for it, never start twice.
        pid=$(<"$DOCKERD_PIDFILE")
        log "dockerd: pid $pid is running but does not answer yet; waiting"
    else
        # A pid file left by a daemon that died would make dockerd refuse to
        # start if its number has since been reused.
        rm -f "$DOCKERD_PIDFILE"
        log "dockerd: starting (log in $LOG_DIR/dockerd.log)"
        # No default bridge and no iptables rules: no private-range network
        # is ever created, and every container and build uses --network host.
        # --ip-forward=false leaves the host's sysctls alone. The data root
        # lives in the test bed directory so that all state is in one place.
        # setsid detaches the daemon from the caller's process group, so that
        # it outlives the shell or CI step that ran `up`. Closing fd 9 keeps
        # the daemon from inheriting (and holding forever) the lock of `up`.
        setsid nohup dockerd \
            --bridge=none --iptables=false --ip-forward=false \
            --data-root "$DOCKER_ROOT" \
            --pidfile "$DOCKERD_PIDFILE" \
            >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null 9>&- &
        pid=$!
    fi
    wait_until_answers docker_answers "$pid" 60 dockerd "$LOG_DIR/dockerd.log"
    log "dockerd: running (pid $pid, engine $(docker info --format '{{.ServerVersion}}'))"
}

write_registry_config() {
    mkdir -p "$REGISTRY_DIR/storage"
    cat >"$REGISTRY_DIR/config.yml" <<EOF
# Written by scripts/testbed.sh: envcap's test registry, on loopback only.
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/storage
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
}

start_registry() {
    local pid
    if registry_answers; then
        if pid_alive "$REGISTRY_PIDFILE" docker-registry; then
            log "registry: already running (pid $(<"$REGISTRY_PIDFILE"))"
        else
            log "registry: something not started by this script already answers on $REGISTRY_ADDR; using it"
        fi
        return
    fi
    if pid_alive "$REGISTRY_PIDFILE" docker-registry; then
        pid=$(<"$REGISTRY_PIDFILE")
        log "registry: pid $pid is running but does not answer yet; waiting"
    else
        write_registry_config
        log "registry: starting on $REGISTRY_ADDR (log in $LOG_DIR/registry.log)"
        setsid nohup docker-registry serve "$REGISTRY_DIR/config.yml" \
            >>"$LOG_DIR/registry.log" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$REGISTRY_PIDFILE"
    fi
    wait_until_answers registry_answers "$pid" 30 docker-registry "$LOG_DIR/registry.log"
    log "registry: running (pid $pid, storage $REGISTRY_DIR/storage)"
}

# Send SIGTERM to the process in PIDFILE (if it is NAME) and wait for it.
stop_pid() {
    local pidfile=$1 name=$2 what=$3 pid i
    if ! pid_alive "$pidfile" "$name"; then
        log "$what: not running (or not started by this script)"
        rm -f "$pidfile"
        return
    fi
    pid=$(<"$pidfile")
    log "$what: stopping pid $pid"
    kill -TERM "$pid"
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$what: still running after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------------------
# Base images
# ---------------------------------------------------------------------------

# Unmount anything left mounted inside a rootfs (debootstrap mounts /proc and
# /sys while it runs and may leave them behind if it is killed), then delete
# it without ever crossing into another file system.
remove_rootfs() {
    local rootfs=$1 mnt
    [[ -e $rootfs ]] || return 0
    awk -v root="$rootfs/" 'index($2, root) == 1 { print $2 }' /proc/mounts |
        sort -r | while read -r mnt; do umount -l "$mnt" || true; done
    rm -rf --one-file-system "$rootfs"
}

# Make (or reuse) the cached rootfs tarball for SUITE and print its path.
# The cache is keyed on everything that goes into it, so a change of mirror
# or package list rebuilds it.
rootfs_tarball() {
    local suite=$1
    local tarball=$CACHE_DIR/debian-$suite-rootfs.tar
    local key="suite=$suite variant=minbase include=$IMAGE_INCLUDE mirror=$MIRROR"
    if [[ -f $tarball && -f $tarball.key && $(<"$tarball.key") == "$key" ]]; then
        log "$suite: using cached rootfs $tarball" >&2
        echo "$tarball"
        return
    fi

    local rootfs=$WORK_DIR/rootfs-$suite start=$SECONDS
    remove_rootfs "$rootfs"
    mkdir -p "$rootfs"
    log "$suite: debootstrap (log in $LOG_DIR/debootstrap-$suite.log)" >&2
    if ! debootstrap --variant=minbase --include="$IMAGE_INCLUDE" \
            "$suite" "$rootfs" "$MIRROR" >"$LOG_DIR/debootstrap-$suite.log" 2>&1; then
        tail -n 20 "$LOG_DIR/debootstrap-$suite.log" >&2
        remove_rootfs "$rootfs"
        die "debootstrap $suite failed; see $LOG_DIR/debootstrap-$suite.log"
    fi

    # apt inside the image must use the same mirror as the host. debootstrap
    # wrote a one-line sources.list; replace it with a deb822 file that names
    # the keyring explicitly (newer keyring packages no longer drop keys into
    # trusted.gpg.d).
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -e $rootfs$keyring ]] || keyring=/usr/share/keyrings/debian-archive-keyring.pgp
    [[ -e $rootfs$keyring ]] || die "$suite: no Debian archive keyring inside the rootfs"
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $suite
Components: main
Signed-By: $keyring
EOF
    # Drop what is specific to this host or to this build: package lists and
    # downloaded .debs (containers run `apt-get update` first, as with any
    # Debian image), and the host's hostname and resolver that debootstrap
    # copies in (docker supplies its own at run time).
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
           "$rootfs"/var/cache/apt/archives/*.deb
    mkdir -p "$rootfs/var/lib/apt/lists/partial"
    echo localhost >"$rootfs/etc/hostname"
    : >"$rootfs/etc/resolv.conf"

    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    echo "$key" >"$tarball.key"
    remove_rootfs "$rootfs"
    log "$suite: rootfs cached in $tarball ($(du -h "$tarball" | cut -f1), $((SECONDS - start)) s)" >&2
    echo "$tarball"
}

# Print the registry's manifest digest for REF, or nothing if it is absent.
registry_digest() {
    skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$1" 2>/dev/null || true
}

# Make sure 127.0.0.1:5000/envcap-base/debian:SUITE is in the registry, and
# set DIGEST to its manifest digest.
ensure_base_image() {
    local suite=$1
    local ref=$REGISTRY_ADDR/$BASE_REPO:$suite
    DIGEST=$(registry_digest "$ref")
    if [[ -n $DIGEST ]]; then
        log "$suite: $ref already in the registry ($DIGEST)"
        return
    fi
    local tarball start=$SECONDS
    tarball=$(rootfs_tarball "$suite")
    log "$suite: docker import and push $ref"
    # A plain rootfs import has no config: give it the PATH and command that
    # Debian's own images have, so that docker, buildah and podman all behave
    # the same way with it.
    docker import \
        --change "ENV PATH=$IMAGE_PATH_ENV" \
        --change 'CMD ["bash"]' \
        "$tarball" "$ref" >>"$LOG_DIR/images.log" 2>&1 ||
        die "docker import of $suite failed; see $LOG_DIR/images.log"
    docker push "$ref" >>"$LOG_DIR/images.log" 2>&1 ||
        die "docker push of $ref failed; see $LOG_DIR/images.log"
    DIGEST=$(registry_digest "$ref")
    [[ -n $DIGEST ]] || die "$ref was pushed but skopeo cannot see it"
    log "$suite: pushed $ref ($DIGEST, $((SECONDS - start)) s)"
}


# ---------------------------------------------------------------------------
# A dated apt archive and CPython builds, on a loopback file server
# ---------------------------------------------------------------------------

# The archive's signing key, made once (a site's archive is signed by its own key).
archive_key() {
    local home=$FILES_DIR/gnupg
    if [[ ! -s $FILES_DIR/debian-archive/archive-key.asc ]]; then
        rm -rf "$home"; mkdir -p "$home" "$FILES_DIR/debian-archive"; chmod 700 "$home"
        GNUPGHOME=$home gpg --batch --quiet --passphrase '' --quick-gen-key \
            'envcap test bed archive <testbed@envcap.invalid>' rsa3072 sign never >>"$LOG_DIR/files.log" 2>&1
        GNUPGHOME=$home gpg --batch --armor --export >"$FILES_DIR/debian-archive/archive-key.asc"
    fi
}

# A Debian archive at $FILES_DIR/debian-archive holding ARCHIVE_PACKAGE at the version
# bookworm-security has, which the base images' mirror (bookworm only) lacks. Kept
# while that version is the current one.
build_archive() {
    local dir=$FILES_DIR/debian-archive version suite_version
    version=$(apt-cache madison "$ARCHIVE_PACKAGE" | awk -F'|' '$3 ~ /bookworm-security/ { gsub(/ /, "", $2); print $2; exit }')
    [[ -n $version ]] || die "no $ARCHIVE_PACKAGE in bookworm-security among the host's apt sources"
    suite_version=$(apt-cache madison "$ARCHIVE_PACKAGE" | awk -F'|' '$3 ~ / bookworm\/main/ { gsub(/ /, "", $2); print $2; exit }')
    [[ $version != "$suite_version" ]] || die "$ARCHIVE_PACKAGE $version is in bookworm itself: pick another package"
    if [[ -f $dir/package && $(<"$dir/package") == "$ARCHIVE_PACKAGE=$version" && -f $dir/dists/bookworm/InRelease ]]; then
        log "files: apt archive holds $ARCHIVE_PACKAGE=$version (cached)"
        return
    fi
    archive_key
    rm -rf "$dir/pool" "$dir/dists"
    mkdir -p "$dir/pool/main" "$dir/dists/bookworm/main/binary-amd64"
    (cd "$dir/pool/main" && apt-get download -q "$ARCHIVE_PACKAGE=$version") >>"$LOG_DIR/files.log" 2>&1 ||
        die "apt-get download $ARCHIVE_PACKAGE=$version failed; see $LOG_DIR/files.log"
    (cd "$dir" && dpkg-scanpackages --multiversion pool/main 2>>"$LOG_DIR/files.log") \
        >"$dir/dists/bookworm/main/binary-amd64/Packages"
    gzip -9nk "$dir/dists/bookworm/main/binary-amd64/Packages"
    {
        echo "Origin: envcap test bed"
        echo "Suite: bookworm"
        echo "Codename: bookworm"
        echo "Date: $(LC_ALL=C date -u -R)"
        echo "Architectures: amd64"
        echo "Components: main"
        echo "SHA256:"
        local f
        for f in main/binary-amd64/Packages main/binary-amd64/Packages.gz; do
            printf ' %s %s %s\n' "$(sha256sum "$dir/dists/bookworm/$f" | cut -d' ' -f1)" \
                "$(stat -c %s "$dir/dists/bookworm/$f")" "$f"
        done
    } >"$dir/dists/bookworm/Release"
    GNUPGHOME=$FILES_DIR/gnupg gpg --batch --yes --quiet --clearsign -o "$dir/dists/bookworm/InRelease" \
        "$dir/dists/bookworm/Release" >>"$LOG_DIR/files.log" 2>&1
    echo "$ARCHIVE_PACKAGE=$version" >"$dir/package"
    log "files: apt archive holds $ARCHIVE_PACKAGE=$version"
}

# CPython made of Debian's own interpreter packages, laid out as python-build-standalone's
# install_only archives are (python/bin, python/lib), and a uv download list with its
# sha256. Debian's interpreter is relocatable the same way; its ensurepip takes the
# pip wheel from the image's python3-pip-whl, which the base images have.
build_python() {
    local dir=$FILES_DIR/python work=$WORK_DIR/python-build key version name sha deb
    key=$(apt-cache policy "${PYTHON_PACKAGES[@]}" | awk '/Candidate:/ { print $2 }' | tr '\n' ' ')
    if [[ -f $dir/key && $(<"$dir/key") == "$key" && -f $dir/downloads.json ]]; then
        log "files: CPython build cached ($dir)"
        return
    fi
    rm -rf "$work" "$dir"; mkdir -p "$work/debs" "$work/root" "$dir"
    (cd "$work/debs" && apt-get download -q "${PYTHON_PACKAGES[@]}") >>"$LOG_DIR/files.log" 2>&1 ||
        die "apt-get download of the interpreter packages failed; see $LOG_DIR/files.log"
    for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
    mkdir -p "$work/python/bin" "$work/python/lib"
    cp -a "$work/root/usr/bin/python3.11" "$work/python/bin/"
    ln -s python3.11 "$work/python/bin/python3"
    ln -s python3.11 "$work/python/bin/python"
    cp -a "$work/root/usr/lib/python3.11" "$work/python/lib/"
    # uv refuses absolute links in an archive, and a standalone build is not externally managed.
    find "$work/python" -type l -lname '/*' -delete
    rm -f "$work/python/lib/python3.11/EXTERNALLY-MANAGED"
    version=$("$work/python/bin/python3" -c 'import platform; print(platform.python_version())')
    name=cpython-$version+debian-x86_64-unknown-linux-gnu-install_only.tar.gz
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf - python | gzip -9n >"$dir/$name"
    sha=$(sha256sum "$dir/$name" | cut -d' ' -f1)
    IFS=. read -r major minor patch <<<"$version"
    cat >"$dir/downloads.json" <<EOF
{"cpython-$version-linux-x86_64-gnu": {"name": "cpython", "arch": {"family": "x86_64", "variant": null}, "os": "linux",
 "libc": "gnu", "major": $major, "minor": $minor, "patch": $patch, "prerelease": "",
 "url": "http://$FILES_ADDR/python/$name", "sha256": "$sha", "variant": null, "build": "debian"}}
EOF
    echo "$key" >"$dir/key"
    rm -rf "$work"
    log "files: CPython $version built from Debian's packages ($dir/$name)"
}

files_answer() { curl -fsS -o /dev/null --max-time 3 "http://$FILES_ADDR/python/downloads.json" 2>/dev/null; }

start_files() {
    local pid
    build_archive
    build_python
    if files_answer; then
        log "files: already served on $FILES_ADDR"
        return
    fi
    log "files: serving $FILES_DIR on $FILES_ADDR (log in $LOG_DIR/files.log)"
    setsid nohup python3 -m http.server --bind "${FILES_ADDR%:*}" --directory "$FILES_DIR" "${FILES_ADDR#*:}" \
        >>"$LOG_DIR/files.log" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$FILES_PIDFILE"
    wait_until_answers files_answer "$pid" 30 "file server" "$LOG_DIR/files.log"
}

# ---------------------------------------------------------------------------
# PostgreSQL: a cluster of the test bed's own
# ---------------------------------------------------------------------------

# The newest PostgreSQL server the postgresql package installed.
pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -x $dir/pg_ctl ]] || die "no PostgreSQL server under /usr/lib/postgresql (package postgresql)"
    printf '%s\n' "$dir"
}

# PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_answers() { as_pg "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

# Start (after creating, the first time) the cluster in $PG_DIR on
# 127.0.0.1:$PG_PORT, with a role that may create the tests' databases, and set
# PG_URL. The role's password is made once and kept in $PG_DIR/password.
start_postgres() {
    local bin password
    bin=$(pg_bindir)
    mkdir -p "$PG_DIR"
    chown postgres: "$PG_DIR" 2>/dev/null || true
    if [[ ! -s $PG_DIR/password ]]; then
        head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$PG_DIR/password"
        chmod 600 "$PG_DIR/password"
    fi
    password=$(<"$PG_DIR/password")
    if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
        log "postgres: creating a cluster in $PG_DIR/data"
        as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres -A peer --auth-host=scram-sha-256 \
            -E UTF8 --no-locale >>"$LOG_DIR/postgres.log" 2>&1 ||
            die "initdb failed; see $LOG_DIR/postgres.log"
    fi
    if pg_answers; then
        log "postgres: already running on 127.0.0.1:$PG_PORT"
    else
        log "postgres: starting on 127.0.0.1:$PG_PORT (log in $PG_DIR/server.log)"
        # Only the loopback address, and a socket directory of its own.
        as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200 -c fsync=on" \
            >/dev/null 9>&- || die "PostgreSQL did not start; see $PG_DIR/server.log"
    fi
    as_pg "$bin/psql" -q -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -v pw="$password" >>"$LOG_DIR/postgres.log" 2>&1 <<'SQL' || die "cannot create the test role; see $LOG_DIR/postgres.log"
SELECT format('CREATE ROLE envcap LOGIN CREATEDB PASSWORD %L', :'pw')
    WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'envcap') \gexec
SELECT format('ALTER ROLE envcap PASSWORD %L', :'pw') \gexec
-- The tests drop their databases WITH (FORCE), which must be able to end any backend
-- still attached to them (an autovacuum worker's among them).
GRANT pg_signal_backend TO envcap;
SELECT 'CREATE DATABASE envcap OWNER envcap'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'envcap') \gexec
SQL
    PG_URL="postgresql://$PG_USER:$password@127.0.0.1:$PG_PORT/envcap"
}

stop_postgres() {
    if [[ -f $PG_DIR/data/postmaster.pid ]]; then
        as_pg "$(pg_bindir)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 ||
            log "postgres: pg_ctl stop failed"
        log "postgres: stopped"
    else
        log "postgres: not running"
    fi
}

# ---------------------------------------------------------------------------
# Slurm: a one-node cluster on loopback (munged, slurmctld, slurmd)
# ---------------------------------------------------------------------------

slurm_answers() { SLURM_CONF=$SLURM_CONF_FILE scontrol ping 2>/dev/null | grep -q 'is UP'; }
slurm_node_ready() {
    SLURM_CONF=$SLURM_CONF_FILE sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'
}
munge_answers() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

write_slurm_config() {
    local host mem
    host=$(hostname -s)
    # Leave 1 GiB to the rest of the machine.
    mem=$(awk '/^MemTotal:/ { m = int($2 / 1024) - 1024; print (m > 512 ? m : 512) }' /proc/meminfo)
    mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR/log"
    cat >"$SLURM_CONF_FILE.tmp" <<EOF
# Written by scripts/testbed.sh: envcap's one-node test cluster, on loopback only.
ClusterName=envcap
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# No slurmdbd: finished jobs stay visible to 'scontrol show job' for an hour,
# which is how envcap learns how a job ended.
MinJobAge=3600
# A cancelled or timed-out job gets SIGTERM, then SIGKILL this many seconds later.
KillWait=30
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=$SLURM_PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$SLURM_CONF_FILE.tmp" "$SLURM_CONF_FILE"
}

start_munge() {
    if munge_answers; then
        log "munge: already running"
        return
    fi
    [[ -s /etc/munge/munge.key ]] || die "no /etc/munge/munge.key (package munge)"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge: /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    log "munge: starting munged"
    runuser -u munge -- munged 9>&- || die "munged did not start; see /var/log/munge/munged.log"
    local i
    for ((i = 0; i < 15; i++)); do munge_answers && break; sleep 1; done
    munge_answers || die "munged does not answer; see /var/log/munge/munged.log"
}

start_slurm() {
    start_munge
    if ! pid_alive "$SLURM_DIR/slurmctld.pid" slurmctld || ! pid_alive "$SLURM_DIR/slurmd.pid" slurmd; then
        write_slurm_config
    fi
    if pid_alive "$SLURM_DIR/slurmctld.pid" slurmctld; then
        log "slurmctld: already running (pid $(<"$SLURM_DIR/slurmctld.pid"))"
    else
        log "slurmctld: starting on 127.0.0.1:$SLURMCTLD_PORT (log in $SLURM_DIR/log/slurmctld.log)"
        setsid slurmctld -f "$SLURM_CONF_FILE" </dev/null 9>&- ||
            die "slurmctld did not start; see $SLURM_DIR/log/slurmctld.log"
    fi
    if pid_alive "$SLURM_DIR/slurmd.pid" slurmd; then
        log "slurmd: already running (pid $(<"$SLURM_DIR/slurmd.pid"))"
    else
        log "slurmd: starting on 127.0.0.1:$SLURMD_PORT (log in $SLURM_DIR/log/slurmd.log)"
        setsid slurmd -f "$SLURM_CONF_FILE" </dev/null 9>&- ||
            die "slurmd did not start; see $SLURM_DIR/log/slurmd.log"
    fi
    local i
    for ((i = 0; i < 60; i++)); do slurm_answers && slurm_node_ready && break; sleep 1; done
    if ! slurm_node_ready; then
        # A node that a previous run left drained or down comes back.
        SLURM_CONF=$SLURM_CONF_FILE scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 2
    fi
    slurm_node_ready || die "the Slurm node is not ready; see $SLURM_DIR/log/"
    log "slurm: partition $SLURM_PARTITION ready (SLURM_CONF=$SLURM_CONF_FILE)"
}

stop_slurm() {
    stop_pid "$SLURM_DIR/slurmd.pid" slurmd slurmd
    stop_pid "$SLURM_DIR/slurmctld.pid" slurmctld slurmctld
    # munged is left running: other programs on the machine may use it.
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

cmd_up() {
    local start=$SECONDS
    [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts dockerd)"
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$CACHE_DIR" "$WORK_DIR" "$REGISTRY_DIR"
    # Two `up` runs at the same time would race on apt, the daemons and the
    # cache; the second one waits for the first.
    exec 9>"$RUN_DIR/lock"
    if ! flock -n 9; then
        log "another 'up' is running; waiting for it (up to 30 min)"
        flock -w 1800 9 || die "gave up waiting for the lock $RUN_DIR/lock"
    fi

    install_host_packages
    resolve_mirror
    start_dockerd
    start_registry
    start_postgres
    start_files
    start_slurm

    local suite env_lines=("ENVCAP_TEST_REGISTRY=$REGISTRY_ADDR")
    for suite in "${SUITES[@]}"; do
        ensure_base_image "$suite"
        env_lines+=("ENVCAP_TEST_BASE_${suite^^}=$REGISTRY_ADDR/$BASE_REPO@$DIGEST")
    done
    env_lines+=("ENVCAP_TEST_APT_MIRROR=$MIRROR")
    # The tests make a database of their own per test with this role.
    env_lines+=("ENVCAP_TEST_PG=$PG_URL")
    env_lines+=("ENVCAP_TEST_PG_BIN=$(pg_bindir)")
    env_lines+=("ENVCAP_TEST_APT_ARCHIVE=http://$FILES_ADDR/debian-archive/")
    env_lines+=("ENVCAP_TEST_APT_ARCHIVE_KEY=$FILES_DIR/debian-archive/archive-key.asc")
    env_lines+=("ENVCAP_TEST_ARCHIVE_PACKAGE=$(<"$FILES_DIR/debian-archive/package")")
    env_lines+=("ENVCAP_TEST_PYTHON_DOWNLOADS=http://$FILES_ADDR/python/downloads.json")
    env_lines+=("SLURM_CONF=$SLURM_CONF_FILE" "ENVCAP_TEST_SLURM_PARTITION=$SLURM_PARTITION")

    printf '%s\n' "${env_lines[@]}" >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
    log "wrote $ENV_FILE:"
    # The test role's password stays out of the log.
    sed -E 's/^/    /; s#(://[^:/@]+:)[^@]*@#\1***@#' "$ENV_FILE"
    log "up: done in $((SECONDS - start)) s"
}

cmd_down() {
    # The registry goes first so that nothing is mid-push when dockerd stops.
    stop_pid "$FILES_PIDFILE" python3 "file server"
    stop_pid "$REGISTRY_PIDFILE" docker-registry registry
    stop_pid "$DOCKERD_PIDFILE" dockerd dockerd
    stop_postgres
    stop_slurm
    log "down: done (cache, images and registry storage kept in $TESTBED_DIR)"
}

cmd_status() {
    local suite ref digest
    if docker_answers; then
        if pid_alive "$DOCKERD_PIDFILE" dockerd; then
            log "dockerd: running (pid $(<"$DOCKERD_PIDFILE"), started by this script)"
        else
            log "dockerd: a daemon answers, not started by this script"
        fi
    else
        log "dockerd: not running"
    fi
    if registry_answers; then
        if pid_alive "$REGISTRY_PIDFILE" docker-registry; then
            log "registry: running on $REGISTRY_ADDR (pid $(<"$REGISTRY_PIDFILE"), started by this script)"
        else
            log "registry: something answers on $REGISTRY_ADDR, not started by this script"
        fi
        for suite in "${SUITES[@]}"; do
            ref=$REGISTRY_ADDR/$BASE_REPO:$suite
            if command -v skopeo >/dev/null; then
                digest=$(registry_digest "$ref")
                log "  $ref: ${digest:-absent}"
            fi
        done
    else
        log "registry: not running"
    fi
    if pg_answers 2>/dev/null; then
        log "postgres: running on 127.0.0.1:$PG_PORT ($PG_DIR/data)"
    else
        log "postgres: not running"
    fi
    if slurm_answers; then
        log "slurm: slurmctld up on 127.0.0.1:$SLURMCTLD_PORT, node $(SLURM_CONF=$SLURM_CONF_FILE sinfo -h -N -o '%N %T' 2>/dev/null | head -n 1) ($SLURM_CONF_FILE)"
    else
        log "slurm: not running"
    fi
    if [[ -f $ENV_FILE ]]; then
        log "env file $ENV_FILE:"
        # The test role's password stays out of the log.
    sed -E 's/^/    /; s#(://[^:/@]+:)[^@]*@#\1***@#' "$ENV_FILE"
    else
        log "env file: none yet (run '$0 up')"
    fi
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 {up|down|status}" >&2
        exit 2
        ;;
esac
