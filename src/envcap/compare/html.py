"""The fleet report as one self-contained HTML page.

Inline CSS only: no script, no font, no image and no link leaves the file, so it opens
anywhere, offline, and can be attached to a ticket. The page leads with the cluster ×
environment and cluster × platform matrices: each cell counts the nodes of a cluster
in a group, the cluster's majority in green, anything else in amber, so drift shows at
a glance. Every text that came from a manifest is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from .diff import describe, section_summary
from .fleet import LAYER_KEY, Cluster, FleetReport, Node, cluster_counts, headline
from ..core.manifest import LAYERS
from ..capture.summary import short

# Up to this many differences are listed one by one; more are summed up per section.
_LIST_LIMIT = 12
# Up to this many outlier nodes of one kind are listed open; more are folded.
_LIST_NODES = 8

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1d232a; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 2em; }
.lead { color: #4a5561; margin-top: 0; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #d5dbe1; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f1f4f7; font-weight: 600; }
.scroll { overflow-x: auto; }
table.matrix td { text-align: center; min-width: 3.2em; font-variant-numeric: tabular-nums; }
table.matrix th.group { font-size: .8em; font-weight: normal; text-align: center; color: #4a5561; }
table.matrix th.group b { display: block; font-size: 1.1em; }
td.major { background: #c9ecd3; font-weight: 600; }
td.minor { background: #ffd9a8; font-weight: 600; }
td.split { background: #dde3ea; }
td.none { color: #b4bcc4; }
code, .id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9em; }
ul.changes { margin: 0; padding-left: 1.1em; } ul.changes li.sensitive { color: #9b1c1c; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .6em; border: 1px solid #d5dbe1; }
.rejected { color: #9b1c1c; }
ul.nodes { margin: 0; padding-left: 1.1em; } summary { cursor: pointer; }
"""


_LEGEND = (
    '<p class="legend"><span style="background:#c9ecd3">the cluster\'s majority</span>'
    '<span style="background:#ffd9a8">nodes that differ from it</span>'
    '<span style="background:#dde3ea">no majority (split cluster)</span></p>'
)


def render_html(report: FleetReport) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>envcap fleet report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>envcap fleet report</h1>",
        f'<p class="lead">{escape(headline(report))}</p>',
        _LEGEND,
    ]
    for layer, title in (("software", "Clusters × environments"), ("platform", "Clusters × platforms")):
        parts.append(f"<h2>{title}</h2>")
        parts.append(_matrix(report, layer))
    parts.append(_outliers(report))
    parts.append(_splits(report))
    for layer, title in (("software", "Environments"), ("platform", "Platforms")):
        parts.append(_groups(report, layer, title))
    parts.append(_links(report))
    if report.rejected:
        parts.append("<h2>Rejected inputs</h2><ul class=\"rejected\">")
        parts.extend(f"<li>{escape(r.error)}</li>" for r in report.rejected)
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _matrix(report: FleetReport, layer: str) -> str:
    groups = report.groups[layer]
    # Names only in the header, so that the matrix stays narrow; the description shows on
    # hover and in the group table below.
    head = "".join(
        f'<th class="group" title="{escape(g.description)}"><b>{escape(g.name)}</b>{g.nodes}</th>' for g in groups
    )
    rows = []
    for c in report.clusters:
        cells = "".join(_cell(c, layer, g.name) for g in groups)
        rows.append(f"<tr><th>{escape(c.name or '(no label)')}</th><td>{c.nodes}</td>{cells}</tr>")
    return (f'<div class="scroll"><table class="matrix"><tr><th>cluster</th><th>nodes</th>{head}</tr>'
            + "".join(rows) + "</table></div>")


def _cell(c: Cluster, layer: str, group: str) -> str:
    n = c.groups[layer].get(group, 0)
    if n == 0:
        return '<td class="none">·</td>'
    majority = c.majority[layer]
    kind = "split" if majority is None else "major" if majority == group else "minor"
    return f'<td class="{kind}">{n}</td>'


def _changes(changes: Any, a: str, b: str) -> str:
    if len(changes) <= _LIST_LIMIT:
        items = "".join(
            f'<li class="{"sensitive" if c.sensitive else ""}">{escape(describe(c, a, b))}</li>' for c in changes
        )
    else:
        items = "".join(
            f'<li class="{"sensitive" if line.startswith("! ") else ""}">{escape(line)}</li>'
            for line in section_summary(changes, a, b)
        )
        items += f"<li>{len(changes)} differences in all: <code>envcap diff</code> lists them</li>"
    return f'<ul class="changes">{items}</ul>'


def _outliers(report: FleetReport) -> str:
    if not report.outliers:
        return "<h2>Outliers</h2><p>None: every node matches its cluster's majority in both layers.</p>"
    rows = []
    for cluster, layer, group, majority, nodes in report.outlier_sets():
        changes = report.comparison(layer, majority, group).changes
        rows.append(
            f"<tr><td>{escape(cluster or '(no label)')}</td><td>{layer}</td>"
            f"<td>{escape(group)} (majority {escape(majority)})</td><td>{_nodes(nodes)}</td>"
            f"<td>{_changes(changes, majority, group)}</td></tr>"
        )
    return ("<h2>Outliers: nodes that differ from their cluster's majority</h2>"
            "<p>Red lines are changes likely to change numerical results.</p>"
            "<table><tr><th>cluster</th><th>layer</th><th>group</th><th>nodes</th><th>what differs</th></tr>"
            + "".join(rows) + "</table>")


def _splits(report: FleetReport) -> str:
    if not report.splits:
        return ""
    rows = []
    for x in report.splits:
        changes = report.comparison(x.layer, x.a, x.b).changes
        rows.append(
            f"<tr><td>{escape(x.cluster or '(no label)')}</td><td>{x.layer}</td>"
            f"<td>{escape(x.a)}{_names(x.nodes_a)}</td><td>{escape(x.b)}{_names(x.nodes_b)}</td>"
            f"<td>{_changes(changes, x.a, x.b)}</td></tr>"
        )
    return ("<h2>Split clusters: what separates the environments of one cluster</h2>"
            "<p>No group holds more than half of these clusters' nodes, so none of them is an outlier.</p>"
            "<table><tr><th>cluster</th><th>layer</th><th>group</th><th>other group</th><th>what differs</th></tr>"
            + "".join(rows) + "</table>")


def _names(names: tuple[str, ...] | list[str]) -> str:
    items = "".join(f"<li>{escape(n)}</li>" for n in names)
    if len(names) <= _LIST_NODES:
        return f'<ul class="nodes">{items}</ul>'
    return f'<details><summary>{len(names)} nodes</summary><ul class="nodes">{items}</ul></details>'


def _nodes(nodes: list[Node]) -> str:
    items = "".join(f'<li title="{escape(n.source)}">{escape(n.name)}</li>' for n in nodes)
    if len(nodes) <= _LIST_NODES:
        return f'<ul class="nodes">{items}</ul>'
    # <details> folds a long list without any script.
    return f'<details><summary>{len(nodes)} nodes</summary><ul class="nodes">{items}</ul></details>'


def _groups(report: FleetReport, layer: str, title: str) -> str:
    rows = "".join(
        f'<tr><td>{escape(g.name)}</td><td class="id">{escape(short(g.id))}</td><td>{g.nodes}{_names(g.members)}</td>'
        f"<td>{escape(cluster_counts(g.clusters))}</td><td>{escape(g.description)}</td></tr>"
        for g in report.groups[layer]
    )
    return (f"<h2>{title} ({layer} layer)</h2><table><tr><th>group</th><th>{LAYER_KEY[layer]}</th>"
            f"<th>nodes</th><th>clusters</th><th>description</th></tr>{rows}</table>")


def _links(report: FleetReport) -> str:
    if not report.links:
        return ""
    rows = []
    for layer in LAYERS:
        for k in (k for k in report.links if k.layer == layer):
            changes = report.comparison(k.layer, k.nearest, k.group).changes
            rows.append(f"<tr><td>{layer}</td><td>{escape(k.group)}</td><td>{escape(k.nearest)}</td>"
                        f"<td>{_changes(changes, k.nearest, k.group)}</td></tr>")
    return ("<h2>Between groups: what separates each group from its nearest</h2>"
            "<table><tr><th>layer</th><th>group</th><th>nearest</th><th>differences</th></tr>"
            + "".join(rows) + "</table>")
