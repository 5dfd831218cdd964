# python.sh VERSION PREFIX [DOWNLOADS [MIRROR]]: install CPython VERSION with uv's managed
# Python builds and move it to PREFIX, where the recorded interpreter lived (the builds
# are relocatable). uv is served by envcap for this step only and leaves no trace; it
# checks each download against the sha256 of its list (its own, or DOWNLOADS: a URL,
# or served:NAME for a list envcap serves). MIRROR is uv's UV_PYTHON_INSTALL_MIRROR.
source "$(dirname "$0")/prologue.sh"
version=$1 prefix=$2 downloads=${3:-} mirror=${4:-}
envcap_fetch uv "$envcap_private/uv"
chmod 0755 "$envcap_private/uv"
case $downloads in
    "") ;;
    served:*)
        envcap_fetch "${downloads#served:}" "$envcap_private/downloads.json"
        export UV_PYTHON_DOWNLOADS_JSON_URL="file://$envcap_private/downloads.json" ;;
    *) export UV_PYTHON_DOWNLOADS_JSON_URL=$downloads ;;
esac
if [ -n "$mirror" ]; then export UV_PYTHON_INSTALL_MIRROR=$mirror; fi
if [ -n "${ENVCAP_CA_SHA256:-}" ]; then export UV_NATIVE_TLS=1; fi
export UV_NO_CONFIG=1 UV_NO_CACHE=1 UV_PYTHON_INSTALL_DIR="$envcap_private/python"
if [ -e "$prefix" ]; then
    echo "envcap: $prefix already exists in the base image; the recorded interpreter cannot go there" >&2
    exit 1
fi
"$envcap_private/uv" python install --no-bin "$version"
installed=("$envcap_private/python/cpython-$version-linux-"*)
if [ ! -x "${installed[0]}/bin/python3" ]; then
    echo "envcap: uv installed no CPython $version" >&2
    exit 1
fi
mkdir -p "$(dirname "$prefix")"
mv "${installed[0]}" "$prefix"
"$prefix/bin/python3" -c 'import sys; print("envcap: CPython", sys.version.split()[0], "at", sys.prefix)'
