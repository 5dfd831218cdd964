# venv.sh BASE_PYTHON PREFIX [--system-site-packages]: make the virtual environment.
source "$(dirname "$0")/prologue.sh"
base_python=$1 prefix=$2
shift 2
"$base_python" -m venv "$@" "$prefix"
