# pip.sh PYTHON LOCKDIR [WHEEL...]: install requirements.txt (hash-checked), then
# requirements-vcs.txt, from LOCKDIR with no resolution (the git repositories that
# vcs-restore.txt names restored, for this step only, from git bundles envcap serves), then
# the editable checkouts editable-restore.txt names (restored for good), and set each distribution's
# REQUESTED marker as python-requested.txt says. No pip configuration of the image
# or of any other machine applies: the lockfiles name their indexes.
source "$(dirname "$0")/prologue.sh"
python=$1 lockdir=$2
shift 2
export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1
links=()
if [ "$#" -gt 0 ]; then
    # Local wheels, served by envcap for this build only; pip checks their hashes.
    mkdir "$envcap_private/wheels"
    for wheel in "$@"; do envcap_fetch "wheels/$wheel" "$envcap_private/wheels/$wheel"; done
    links=(--find-links "$envcap_private/wheels")
fi
placed=()
if [ -f "$lockdir/wheel-restore.txt" ]; then
    # Each line: WHEEL PATH. A local wheel is put back where the run's machine had it, for
    # requirements.txt's "NAME @ file://PATH" (pip records the same origin), and removed below.
    while read -r wheel path; do
        top=$path
        while [ ! -e "$(dirname "$top")" ]; do top=$(dirname "$top"); done
        [ -e "$top" ] && { echo "envcap: $path exists in the image: cannot put a wheel there" >&2; exit 1; }
        mkdir -p "$(dirname "$path")"
        cp "$envcap_private/wheels/$wheel" "$path"
        placed+=("$top")
    done <"$lockdir/wheel-restore.txt"
fi
if [ -f "$lockdir/requirements.txt" ]; then
    "$python" -m pip install --no-deps --require-hashes "${links[@]}" -r "$lockdir/requirements.txt"
fi
for top in "${placed[@]}"; do rm -rf "$top"; done
restored=()
mkdir "$envcap_private/git"
if [ -f "$lockdir/vcs-restore.txt" ]; then
    # Each line: SERVED PATH REVISION. The repository is put back where the run's machine had
    # it (pip installs from the same URL, so it records the same origin) and removed below.
    # A remote's URL instead of a PATH: the bundle is cloned into the private folder and git
    # is told, for this step only, to fetch that URL from there.
    n=0
    while read -r served path rev; do
        if [ "${path#/}" = "$path" ]; then
            n=$((n + 1))
            envcap_fetch "$served" "$envcap_private/git/bundle"
            git clone --quiet --bare "$envcap_private/git/bundle" "$envcap_private/git/remote-$n.git"
            rm -f "$envcap_private/git/bundle"
            if [ "$rev" != "-" ] && ! git -C "$envcap_private/git/remote-$n.git" rev-parse -q --verify "$rev^{commit}" >/dev/null; then
                git -C "$envcap_private/git/remote-$n.git" tag "$rev" HEAD
            fi
            git config --file "$envcap_private/gitconfig" --add \
                "url.file://$envcap_private/git/remote-$n.git.insteadOf" "$path"
            export GIT_CONFIG_GLOBAL="$envcap_private/gitconfig"
            continue
        fi
        top=$path
        while [ ! -e "$(dirname "$top")" ]; do top=$(dirname "$top"); done
        [ -e "$top" ] && { echo "envcap: $path exists in the image: cannot restore a repository there" >&2; exit 1; }
        envcap_fetch "$served" "$envcap_private/git/bundle"
        git clone --quiet --bare "$envcap_private/git/bundle" "$path"
        if [ "$rev" != "-" ] && ! git -C "$path" rev-parse -q --verify "$rev^{commit}" >/dev/null; then
            git -C "$path" tag "$rev" HEAD
        fi
        rm -f "$envcap_private/git/bundle"
        restored+=("$top")
    done <"$lockdir/vcs-restore.txt"
fi
if [ -f "$lockdir/requirements-vcs.txt" ]; then
    "$python" -m pip install --no-deps -r "$lockdir/requirements-vcs.txt"
fi
for top in "${restored[@]}"; do rm -rf "$top"; done
unset GIT_CONFIG_GLOBAL
if [ -f "$lockdir/editable-restore.txt" ]; then
    # Each line: SERVED PATH BRANCH PATCH. A checkout installed editable that is not the run's
    # own: put back at its recorded path and commit (the bundle's HEAD), on its branch, with
    # the uncommitted changes a run recorded (PATCH, "-": none), and installed editable from
    # there, where it stays, as on the run's machine.
    index=()
    if [ -f "$lockdir/requirements.txt" ]; then
        url=$(sed -n 's/^--index-url //p' "$lockdir/requirements.txt" | head -n 1)
        [ -n "$url" ] && index=(--index-url "$url")
    fi
    while read -r served path branch patch; do
        [ -e "$path" ] && { echo "envcap: $path exists in the image: cannot restore a checkout there" >&2; exit 1; }
        envcap_fetch "$served" "$envcap_private/git/bundle"
        mkdir -p "$(dirname "$path")"
        git clone --quiet "$envcap_private/git/bundle" "$path"
        git -C "$path" remote remove origin
        if [ "$branch" = "-" ]; then
            git -C "$path" checkout --quiet --detach
            git -C "$path" branch --quiet -D envcap-carried
        elif [ "$branch" != envcap-carried ]; then
            git -C "$path" branch --quiet -m envcap-carried "$branch"
        fi
        if [ "$patch" != "-" ]; then
            envcap_fetch "$patch" "$envcap_private/git/changes.patch"
            git -C "$path" apply --binary --whitespace=nowarn "$envcap_private/git/changes.patch"
            rm -f "$envcap_private/git/changes.patch"
        fi
        rm -f "$envcap_private/git/bundle"
        "$python" -m pip install --no-deps --no-build-isolation --no-index -e "$path" >/dev/null 2>&1 ||
            "$python" -m pip install --no-deps "${index[@]}" -e "$path"
    done <"$lockdir/editable-restore.txt"
fi
"$python" - "$lockdir/python-requested.txt" <<'PY'
import os, re, sys, sysconfig
want = {}
for line in open(sys.argv[1], encoding="utf-8"):
    name, _, flag = line.strip().partition(" ")
    if name and not name.startswith("#"):
        want[name] = flag == "requested"
seen = set()
for folder in sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}):
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        meta = os.path.join(folder, entry, "METADATA")
        if not entry.endswith(".dist-info") or not os.path.isfile(meta):
            continue
        name = None
        with open(meta, encoding="utf-8", errors="replace") as fh:
            for header in fh:
                if not header.strip():
                    break
                if header.lower().startswith("name:"):
                    name = re.sub(r"[-_.]+", "-", header.split(":", 1)[1].strip()).lower()
                    break
        if name not in want or name in seen:
            continue
        seen.add(name)
        marker = os.path.join(folder, entry, "REQUESTED")
        if want[name]:
            open(marker, "a").close()
        elif os.path.exists(marker):
            os.remove(marker)
PY
