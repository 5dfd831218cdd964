# conda.sh PREFIX LOCKFILE: install an explicit conda lockfile into PREFIX (no solving).
source "$(dirname "$0")/prologue.sh"
prefix=$1 lockfile=$2
tool=$(command -v micromamba || command -v mamba || command -v conda) || {
    echo "envcap: the base image has no conda, mamba or micromamba" >&2; exit 1; }
if [ -d "$prefix/conda-meta" ]; then
    "$tool" install --yes --prefix "$prefix" --file "$lockfile"
else
    "$tool" create --yes --prefix "$prefix" --file "$lockfile"
fi
"$tool" clean --all --yes
