#!/usr/bin/env bash
# Run on a lent GPU machine from the repository root, with the wheels envcap needs that
# the machine lacks (distro, rfc8785, psutil) in .whl/: the GPU probes against nvidia-smi and
# NVML, a whole live snapshot against pip list and dpkg-query, snapshot timings, and a run's
# GPU resource samples against nvidia-smi (scripts/device_check_resources.py, needs torch).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD/src ENVCAP_HOME=/tmp/envcap-home PYTHONUNBUFFERED=1
mkdir -p $OUT/t
python3 scripts/device_check.py > $OUT/device_check.json 2>&1; echo "device_check rc=$?"
tail -1 $OUT/device_check.json
python3 scripts/device_check_resources.py > $OUT/resources_check.json 2>&1; echo "resources_check rc=$?"
tail -3 $OUT/resources_check.json
python3 -m envcap snapshot --json --no-store > $OUT/snapshot.json 2>$OUT/t/snapshot.err; echo "snapshot rc=$?"
python3 -m envcap snapshot | head -20
python3 -m pip list --format=json > $OUT/t/pip-list.json 2>/dev/null
dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\n' > $OUT/t/dpkg.tsv
nvidia-smi -q -x > $OUT/t/nvidia-smi-q.xml; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv > $OUT/t/smi.csv
cp /etc/os-release $OUT/t/; uname -r > $OUT/t/uname
python3 - <<'PY'
import json, os
snap = json.load(open(os.environ["OUT"] + "/snapshot.json"))
s = snap["sections"]
pip = {p["name"].lower().replace("_", "-").replace(".", "-"): p["version"] for p in json.load(open(os.environ["OUT"] + "/t/pip-list.json"))}
mine = {p["name"]: p["version"] for p in s["python"]["packages"]}
print("pip list equal:", mine == pip, len(mine), len(pip), sorted(set(mine.items()) ^ set(pip.items()))[:6])
dpkg = {tuple(l.split("\t")) for l in open(os.environ["OUT"] + "/t/dpkg.tsv").read().splitlines()}
mine = {(p["name"], p["version"], p["arch"]) for p in s["system"]["packages"]}
print("dpkg equal:", mine == dpkg, len(mine), len(dpkg))
print("gpu:", json.dumps(s.get("gpu")))
print("cuda:", json.dumps({k: v for k, v in (s.get("cuda") or {}).items() if k != "libraries"}))
print("unknowns:", snap["unknowns"], "probe ms:", {k: v["ms"] for k, v in snap["observed"]["probes"].items()})
PY
bench() { local s=0; for i in 1 2 3 4 5; do t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo -n "$(( (t1-t0)/1000000 )) "; done; echo " ms: $*"; }
bench python3 -c pass; bench python3 -m envcap snapshot; bench python3 -m pip freeze; bench python3 -m torch.utils.collect_env
cd $OUT && tar cf truth.tar t && rm -r t
