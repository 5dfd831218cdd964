"""Runs as text for people (plain lines: ``envcap show`` and ``envcap runs`` print these)."""

from __future__ import annotations

import json
from typing import Any

from ..capture.summary import short


def _value(v: Any, width: int = 60) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(key: str, value: str) -> str:
    return f"  {key:<12}{value}"


def status_text(view: dict[str, Any]) -> str:
    status = view["status"]
    if status == "unfinished":
        return "unfinished"
    if view.get("signal"):
        return f"killed by {view['signal']} (exit {view['exit_code']})"
    return f"{status} (exit {view['exit_code']})"


def show_lines(view: dict[str, Any]) -> list[str]:
    lines = [f"run {view['id']}", ""]
    lines.append(_row("status", status_text(view)))
    if view.get("key"):
        lines.append(_row("key run", "yes (envcap key): revalidated by envcap revalidate"))
    lines.append(_row("command", view["command"]))
    lines.append(_row("cwd", view["cwd"]))
    when = view["started_at"] + (f" → {view['ended_at']} ({view['duration_s']:.2f} s)" if view.get("ended_at") else "")
    lines.append(_row("time", when + (f" on {view['host']}" if view.get("host") else "")))
    if view.get("labels"):
        lines.append(_row("labels", " ".join(f"{k}={v}" for k, v in sorted(view["labels"].items()))))
    lines.append(_row("env_id", view.get("env_id") or "not captured"))
    if view.get("manifest"):
        lines.append(_row("manifest", view["manifest"]))
    python = view.get("python") or {}
    if python.get("executable"):
        lines.append(_row("python", f"{python['executable']} (from {python.get('from')})"))
    lines += _git_lines(view.get("git") or {})
    if view.get("params"):
        lines.append(_row("params_id", view["params_id"]))
        for p in view["params"]:
            given = p.get("given")
            note = f"; given {_value(given['value'], 30)}, not used" if isinstance(given, dict) else ""
            lines.append(_row("", f"{p['name']} = {_value(p['value'])}  ({p['source']}{note})"))
    for pf in view.get("params_files") or ():
        lines.append(_row("params file", f"{pf['path']}  {short(pf['sha256'])}"))
    seeds = view.get("seeds") or {}
    if seeds.get("global") is not None or seeds.get("named"):
        named = " ".join(f"{k}={v}" for k, v in sorted((seeds.get("named") or {}).items()))
        lines.append(_row("seeds", f"global {seeds.get('global')}" + (f"  {named}" if named else "")))
        libs = ", ".join(s["library"] for s in seeds.get("set") or () if s.get("seed") is not None)
        if libs:
            lines.append(_row("", f"seeded: {libs}"))
    for d in view.get("data") or ():
        extra = " ".join(f"{k}={d[k]}" for k in ("split", "version") if d.get(k))
        lines.append(_row("data", f"{d['name']}  {d['path']}  {short(d['fingerprint'])}  {d['files']} file(s) {extra}"
                          .rstrip()))
        for step in d.get("lineage") or ():
            seed = f" seed={step['seed']}" if step.get("seed") is not None else ""
            lines.append(_row("", f"  {step['kind']} {step['name']} {_value(step.get('params') or {}, 40)}{seed}"))
    for o in view.get("outputs") or ():
        lines.append(_row("output", f"{o['path']}  " + ("missing" if o.get("missing") else short(o["fingerprint"]))))
    if view.get("metrics"):
        lines.append(_row("metrics", "  ".join(f"{k}={_value(v, 20)}" for k, v in view["metrics"].items())))
    lines += resource_lines(view.get("resources"))
    reproduction = view.get("reproduction")
    if reproduction:
        verdict = reproduction.get("verdict") or ("no verdict: it did not complete" if view.get("ended_at")
                                                   else "no verdict yet")
        lines.append(_row("reproduces", f"run {reproduction['of']}: {verdict}"))
        for key in ("revalidation", "bisect"):
            if reproduction.get(key):
                lines.append(_row("", f"{key}: {_value(reproduction[key], 80)}"))
    for later in view.get("reproduced_by") or ():
        lines.append(_row("reproduced", f"by run {later['run']}: {later.get('verdict') or 'no verdict yet'}"))
    for note in view.get("notes") or ():
        lines.append(_row("note", f"{note['time']}  {note['text']}"))
    for problem in view.get("problems") or ():
        lines.append(_row("problem", problem))
    return lines


def _num(value: Any, unit: str, digits: int = 1) -> str:
    return "?" if value is None else f"{value:.{digits}f}{unit}"


def _bytes(value: Any) -> str:
    if value is None:
        return "?"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def resource_lines(res: dict[str, Any] | None) -> list[str]:
    """The resource summary of a run, a line or two per kind of resource."""
    if not res:
        return []
    cpu = (f"cpu {_num(res.get('cpu_s'), ' s', 2)} (user {_num(res.get('cpu_user_s'), ' s', 2)}, "
           f"system {_num(res.get('cpu_system_s'), ' s', 2)}; {_num(res.get('cpu_util_pct'), '%')} of one core)")
    lines = [_row("resources", f"wall {_num(res.get('wall_s'), ' s', 2)}, {cpu}")]
    memory = f"memory peak {_num(res.get('peak_rss_mib'), ' MiB')}"
    if res.get("mean_rss_mib") is not None:
        memory += f", mean {_num(res['mean_rss_mib'], ' MiB')}"
    lines.append(_row("", memory))
    io = f"i/o read {_bytes(res.get('read_bytes'))}, written {_bytes(res.get('write_bytes'))}"
    if res.get("peak_threads") is not None:
        io += f"; peak {res['peak_threads']} thread(s) in {res.get('peak_processes')} process(es)"
    lines.append(_row("", io))
    for dev in res.get("gpu") or ():
        energy = (f", {_num(dev['energy_j'], ' J')} ({dev.get('energy_from')})"
                  if dev.get("energy_j") is not None else "")
        lines.append(_row("", f"gpu {dev.get('index')} {dev.get('name') or ''}: util peak "
                          f"{_num(dev.get('peak_util_pct'), '%', 0)} mean {_num(dev.get('mean_util_pct'), '%')}, "
                          f"memory peak {_num(dev.get('peak_memory_mib'), ' MiB')}{energy}"))
    if res.get("samples"):
        lines.append(_row("", f"{res['samples']} samples every {res.get('interval_s')} s: {short(res['object'])}"
                          if res.get("object") else f"{res['samples']} samples"))
    return lines


def _git_lines(git: dict[str, Any]) -> list[str]:
    if not git.get("in_repository"):
        return [_row("git", git.get("reason") or "not in a git repository")]
    head = f"{git.get('commit') or '(no commit yet)'}"
    if git.get("branch"):
        head += f" on {git['branch']}"
    if git.get("tags"):
        head += f" ({', '.join(git['tags'])})"
    lines = [_row("git", head + ("  dirty" if git.get("dirty") else "  clean"))]
    if git.get("remote"):
        lines.append(_row("", f"remote {git['remote']}"))
    diff = git.get("diff")
    if diff:
        lines.append(_row("", f"uncommitted diff {diff['size']} bytes" +
                          (f" ({diff['withheld']})" if diff.get("withheld") else "")))
    untracked = git.get("untracked") or []
    if untracked:
        kept = sum(1 for u in untracked if u.get("object"))
        lines.append(_row("", f"{len(untracked)} untracked file(s), {kept} kept"))
    for sub in git.get("submodules") or ():
        lines.append(_row("", f"submodule {sub['path']} {sub['commit']} ({sub['state']})"))
    return lines


def table_rows(views: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["id", "started", "status", "time", "host", "env", "params", "metrics", "command"]
    keyed = any(v.get("key") for v in views)
    if keyed:
        header.insert(1, "key")
    rows = []
    for v in views:
        duration = f"{v['duration_s']:.1f}s" if v.get("duration_s") is not None else ""
        status = v["status"] if v["status"] in ("ok", "unfinished") else f"{v['status']}({v.get('exit_code')})"
        metrics = "\n".join(f"{k}={_value(val, 12)}" for k, val in list((v.get("metrics") or {}).items())[:3])
        # Every parameter, one a line: a table cell is never cut in the middle of one.
        params = "\n".join(f"{p['name']}={_value(p['value'], 40)}" for p in v.get("params") or []) \
            or params_text(v)
        rows.append([v["id"], (v.get("started_at") or "")[:19].replace("T", " "), status, duration,
                     v.get("host") or "", short(v["env_id"]) if v.get("env_id") else "", params, metrics,
                     _value(v.get("command") or "", 50)])
        if keyed:
            rows[-1].insert(1, "key" if v.get("key") else "")
    return header, rows


def params_text(view: dict[str, Any], width: int = 40) -> str:
    """The parameters by name and value (``lr=0.01 model=resnet``), else their id."""
    params = view.get("params") or []
    if not params:
        return short(view["params_id"]) if view.get("params_id") and view.get("status") == "unreadable" else ""
    return _value(" ".join(f"{p['name']}={_value(p['value'], 16)}" for p in params), width)


def metrics_lines(history: dict[str, list[dict[str, Any]]]) -> list[str]:
    """A metric history as columns: name, step (``-`` when none was given), value."""
    width = max((len(n) for n in history), default=6)
    lines = [f"{'metric':<{width}}  {'step':>6}  value"]
    for name, points in history.items():
        for p in points:
            step = "-" if p.get("step") is None else str(p["step"])
            lines.append(f"{name:<{width}}  {step:>6}  {_value(p['value'], 40)}")
    return lines
