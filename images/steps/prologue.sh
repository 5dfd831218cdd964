# envcap build step prologue (sourced by every step): strict mode, reproducible byte-compilation, and the
# build's private files (a CA bundle, local wheels) fetched from envcap's loopback file
# server into a temporary folder that is removed before the step ends, so that
# nothing of them is left in any layer. Only bash builtins fetch, so any image with
# bash can take them.
set -euo pipefail
export SOURCE_DATE_EPOCH=0 LC_ALL=C.UTF-8
envcap_private=$(mktemp -d)
trap 'rm -rf "$envcap_private"' EXIT
envcap_fetch() {  # envcap_fetch PATH FILE: GET http://127.0.0.1:$ENVCAP_SERVER_PORT/PATH into FILE
    local line
    exec 3<>"/dev/tcp/127.0.0.1/$ENVCAP_SERVER_PORT"
    printf 'GET /%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
    IFS= read -r line <&3
    case $line in "HTTP/1."?" 200"*) ;; *) echo "envcap: file server answered: $line" >&2; return 1 ;; esac
    while IFS= read -r line <&3; do [ "$line" = $'\r' ] && break; done
    cat <&3 >"$2"
    exec 3<&-
}
if [ -n "${ENVCAP_CA_SHA256:-}" ]; then
    envcap_fetch ca.pem "$envcap_private/ca.pem"
    echo "$ENVCAP_CA_SHA256  $envcap_private/ca.pem" | sha256sum --check --quiet --strict
    export PIP_CERT="$envcap_private/ca.pem" SSL_CERT_FILE="$envcap_private/ca.pem" \
        REQUESTS_CA_BUNDLE="$envcap_private/ca.pem" CURL_CA_BUNDLE="$envcap_private/ca.pem" \
        CONDA_SSL_VERIFY="$envcap_private/ca.pem"
    envcap_apt_ca=(-o "Acquire::https::CAInfo=$envcap_private/ca.pem")
else
    envcap_apt_ca=()
fi
