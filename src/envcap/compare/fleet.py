"""Fleet comparison: which environments and platforms many nodes run, per cluster, and
which nodes drifted from their cluster.

Nodes are grouped per layer by their ids (``env_id`` for the software layer,
``platform_id`` for the platform layer): the ids are hashes of exactly those sections,
so equal ids mean equal content and nothing is compared twice. Only one representative
manifest per group is ever diffed.

Every input passes the same validation as any manifest, but the costly part of it (the
canonical hash of the sections, a few ms for a real manifest) is done once per distinct
manifest id, not once per file. A file whose ``sections`` value is, byte for byte, the
``sections`` value of a manifest already verified in full in this run, under the same
recorded ids and the same layers, holds the same JSON value, and so the same hash:
checking that is a comparison of bytes. Everything else in the file (schema version,
observations, labels, unknowns) goes through :meth:`Manifest.from_dict` itself. Any
file that does not take this path (a new id, other formatting, anything unexpected) is
loaded the ordinary way, with :meth:`Manifest.from_json`.

Store snapshots are read from what the store verified when it put them: a node is its
index row; each record object is still read and re-hashed (a damaged one is rejected),
and each distinct manifest is rebuilt once from its objects with
:meth:`Manifest.from_stored`, without walking and hashing its sections again.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from .diff import Change, changes_between, features
from ..core.errors import ManifestError, NotFoundError, StoreError, UsageError
from ..core import structure
from ..core.manifest import LAYERS, Manifest, compute_ids


class StoreBackend(Protocol):
    """What the fleet reads of a store (``compare`` sits below ``store`` in the layer
    table, so it names the operations it needs rather than the store's interface)."""

    def snapshot_nodes(self) -> list[Any]: ...
    def get_object(self, oid: str) -> bytes: ...
    def load_snapshot(self, record_id: str, record_bytes: bytes, *, verified: bool = False) -> Manifest: ...

LAYER_KEY = {"software": "env_id", "platform": "platform_id"}
GROUP_PREFIX = {"software": "E", "platform": "P"}
# Above this many groups in a layer, each group is compared with the layer's largest
# group instead of its nearest one, which costs a comparison of every pair.
NEAREST_LIMIT = 200
# How many formattings of one manifest's sections the byte comparison remembers.
SPAN_VARIANTS = 4
UNLABELLED = ""


@dataclass(frozen=True, slots=True)
class Node:
    """One snapshot of one machine, reduced to what the fleet view needs."""

    name: str
    source: str
    id: str
    env_id: str
    platform_id: str
    hostname: str | None
    time: str | None
    labels: Mapping[str, str]

    def layer_id(self, layer: str) -> str:
        return self.env_id if layer == "software" else self.platform_id


@dataclass(frozen=True, slots=True)
class Rejected:
    source: str
    error: str


@dataclass(slots=True)
class Fleet:
    """The nodes of a fleet and one verified manifest for each distinct id."""

    nodes: list[Node] = field(default_factory=list)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    snapshots: int = 0
    superseded: int = 0


# -- ingest ------------------------------------------------------------------------------

_EMPTY = compute_ids({}, {})
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = structure.decoder()


@dataclass(frozen=True, slots=True)
class _Scan:
    members: dict[str, Any]
    matched: str | None  # the id whose verified sections bytes this file repeats
    span: tuple[int, int] | None  # where the sections value lies, when it was parsed


class Loader:
    """Reads manifests into a :class:`Fleet`, verifying each distinct id in full once."""

    def __init__(self) -> None:
        self.fleet = Fleet()
        # id -> [(sections text, layers value)] of files verified in full.
        self._known: dict[str, list[tuple[str, Any]]] = {}

    # files

    def add_paths(self, paths: Iterable[str | Path]) -> None:
        for entry in paths:
            path = Path(entry)
            if path.is_dir():
                files = sorted(p for p in path.glob("*.json") if p.is_file())
                if not files:
                    raise UsageError(f"{path}: no manifest files (*.json) in this directory")
                for f in files:
                    self.add_file(f)
            elif path.is_file():
                self.add_file(path)
            else:
                raise NotFoundError(f"{path}: no such file or directory")

    def add_file(self, path: Path) -> None:
        source = str(path)
        self.fleet.snapshots += 1
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.fleet.rejected.append(Rejected(source, f"{source}: cannot read: {exc.strerror}"))
            return
        try:
            self._load(raw, source)
        except ManifestError as exc:
            self.fleet.rejected.append(Rejected(source, str(exc)))

    def _load(self, raw: bytes, source: str) -> None:
        try:
            text: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        scan = _scan_top(text, self._known) if text is not None else None
        if scan is not None and scan.matched is not None:
            m = self.fleet.manifests[scan.matched]
            members = scan.members
            if (members.get("env_id"), members.get("platform_id")) == (m.env_id, m.platform_id):
                _check_envelope(members, source)
                self._add_node(members, source)
                return
        manifest = Manifest.from_json(raw, source=source)  # the ordinary validation, in full
        self.fleet.manifests.setdefault(manifest.id, manifest)
        if scan is not None and scan.span is not None and text is not None:
            variants = self._known.setdefault(manifest.id, [])
            if len(variants) < SPAN_VARIANTS:
                start, end = scan.span
                variants.append((text[start:end], scan.members.get("layers")))
        self._add_node(_members(manifest), source)

    # the store

    def add_store(self, store: StoreBackend) -> None:
        """Every snapshot in STORE (either backend of :mod:`envcap.store`).

        A node is what the store's index says of its snapshot (ids, host, time, labels),
        written when the store verified the snapshot; its record object is still read
        and re-hashed (a damaged one is rejected), but not parsed and validated again.
        Each distinct manifest is rebuilt once from its two re-hashed objects, without
        validating its sections again (the store did before it wrote them).
        """
        # A shared store hands out records a thousand to a query: one round trip to the
        # database per snapshot would cost more than everything else here.
        fetch = getattr(store, "get_objects", None)
        rows = store.snapshot_nodes()
        for start in range(0, len(rows), 1000):
            chunk = rows[start:start + 1000]
            blobs: dict[str, bytes] = {}
            if fetch is not None:
                try:
                    blobs = fetch([r.record for r in chunk])
                except StoreError:
                    blobs = {}  # One bad object: each row is read on its own and the bad one rejected.
            for row in chunk:
                self._add_stored(store, row, blobs.get(row.record))

    def _add_stored(self, store: StoreBackend, row: Any, blob: bytes | None) -> None:
        """One snapshot row of the store (its record's bytes already read, when given)."""
        source = f"store snapshot {row.record}"
        self.fleet.snapshots += 1
        try:
            if blob is None:
                blob = store.get_object(row.record)  # re-hashed: a damaged record is an error
            if row.manifest_id not in self.fleet.manifests:
                m = store.load_snapshot(row.record, blob, verified=True)
                if m.id != row.manifest_id:
                    raise StoreError(f"{source} does not name the manifest its index row names")
                self.fleet.manifests[m.id] = m
            m = self.fleet.manifests[row.manifest_id]
            if (m.env_id, m.platform_id) != (row.env_id, row.platform_id):
                raise StoreError(f"{source} does not carry the ids of the manifest it names")
            self._add_node({"id": m.id, "env_id": m.env_id, "platform_id": m.platform_id,
                            "observed": {"hostname": row.hostname, "time": row.taken_at},
                            "labels": row.labels}, source)
        except (StoreError, ManifestError) as exc:
            self.fleet.rejected.append(Rejected(source, str(exc)))

    # nodes

    def _add_node(self, members: Mapping[str, Any], source: str) -> None:
        observed = members.get("observed") or {}
        hostname = observed.get("hostname")
        name = hostname or _source_name(source)
        # Environments are grouped under the newest identity rule: a node captured by an
        # older envcap (another schema minor) is not another environment for that alone.
        known = self.fleet.manifests.get(members["id"])
        env_id = known.current_env_id() if known is not None else members["env_id"]
        self.fleet.nodes.append(Node(
            name=str(name), source=source, id=members["id"], env_id=env_id,
            platform_id=members["platform_id"], hostname=hostname, time=observed.get("time"),
            labels=dict(members.get("labels") or {}),
        ))


def _members(m: Manifest) -> dict[str, Any]:
    return {"id": m.id, "env_id": m.env_id, "platform_id": m.platform_id, "observed": m.observed, "labels": m.labels}


def _source_name(source: str) -> str:
    if source.startswith("store snapshot "):
        return "snapshot " + source.rsplit(":", 1)[-1][:12]
    return Path(source).stem


def _check_envelope(members: Mapping[str, Any], source: str) -> None:
    """Validate everything outside ``sections`` and ``layers`` with the manifest's own code.

    The caller has established that the sections and layers are those of a manifest
    verified in full under the recorded ids; here they are replaced by empty ones (and
    the ids by the empty manifest's), so that :meth:`Manifest.from_dict` checks the rest.
    """
    stub = dict(members)
    stub.update(sections={}, layers={}, id=_EMPTY.id, env_id=_EMPTY.env_id, platform_id=_EMPTY.platform_id)
    Manifest.from_dict(stub, source=source)


def _scan_top(text: str, known: Mapping[str, list[tuple[str, Any]]]) -> _Scan | None:
    """The members of a JSON document's top-level object, with its ``sections`` value
    compared as text against verified ones instead of parsed where possible.

    Returns None for anything but a plain object with unique keys (malformed JSON
    included): such a file takes the ordinary path, which says what is wrong with it.
    A JSON object is self-delimiting (it ends at its matching brace), so a run of text
    equal to a complete, verified object is that object.
    """
    members: dict[str, Any] = {}
    matched: tuple[str, Any] | None = None  # (id, layers) of the verified text repeated here
    span: tuple[int, int] | None = None
    try:
        pos = _skip(text, 0)
        if text[pos:pos + 1] != "{":
            return None
        pos = _skip(text, pos + 1)
        while text[pos:pos + 1] == '"':
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip(text, pos)
            if text[pos:pos + 1] != ":" or key in members:
                return None
            pos = _skip(text, pos + 1)
            value: Any = None
            mid = members.get("id")
            variants = known.get(mid, ()) if key == "sections" and isinstance(mid, str) else ()
            for sections_text, layers in variants:
                if text.startswith(sections_text, pos):
                    matched = (members["id"], layers)
                    pos += len(sections_text)
                    break
            else:
                value, end = _DECODER.raw_decode(text, pos)
                if key == "sections":
                    span = (pos, end)
                pos = end
            members[key] = value
            pos = _skip(text, pos)
            if text[pos:pos + 1] == "}":
                break
            if text[pos:pos + 1] != ",":
                return None
            pos = _skip(text, pos + 1)
        else:
            return None
        if _skip(text, pos + 1) != len(text):
            return None
    except (ValueError, IndexError, RecursionError):
        return None
    if matched is not None and members.get("layers") != matched[1]:
        return _Scan(members, None, None)  # sections unparsed: the ordinary path reads the file
    return _Scan(members, matched[0] if matched else None, span)


def _skip(text: str, pos: int) -> int:
    """The position of the first non-whitespace character (JSON whitespace) at or after POS."""
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # the pattern matches the empty string


def load_fleet(paths: Iterable[str | Path] = (), *, store: StoreBackend | None = None, every_snapshot: bool = False) -> Fleet:
    """Read manifest files, directories of them (``*.json``) and/or a store into a fleet.

    Unless ``every_snapshot``, a host snapshotted more than once counts once, by its
    newest snapshot.
    """
    loader = Loader()
    loader.add_paths(paths)
    if store is not None:
        loader.add_store(store)
    fleet = loader.fleet
    if not every_snapshot:
        fleet.nodes, fleet.superseded = _newest_per_host(fleet.nodes)
    return fleet


def _newest_per_host(nodes: list[Node]) -> tuple[list[Node], int]:
    newest: dict[str, Node] = {}
    for n in nodes:
        if n.hostname is None:
            continue
        seen = newest.get(n.hostname)
        if seen is None or (n.time or "") >= (seen.time or ""):
            newest[n.hostname] = n
    kept = [n for n in nodes if n.hostname is None or newest[n.hostname] is n]
    return kept, len(nodes) - len(kept)


# -- analysis ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """Nodes sharing one layer's id."""

    layer: str
    name: str
    id: str
    nodes: int
    representative: str  # the manifest id diffs of this group are taken from
    description: str
    clusters: Mapping[str, int]
    members: tuple[str, ...] = ()  # the names of its nodes


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    nodes: int
    groups: Mapping[str, Mapping[str, int]]  # layer -> group name -> nodes
    majority: Mapping[str, str | None]  # layer -> the group of more than half the nodes
    members: tuple[str, ...] = ()  # the names of its nodes


@dataclass(frozen=True, slots=True)
class Split:
    """Two groups of one layer within one cluster, neither of them its majority's
    outliers: the cluster's largest group ``a`` and another one ``b``, with their nodes."""

    cluster: str
    layer: str
    a: str
    b: str
    nodes_a: tuple[str, ...]
    nodes_b: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """What separates group ``b`` from group ``a`` in one layer."""

    layer: str
    a: str
    b: str
    changes: tuple[Change, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "a": self.a, "b": self.b, "changes": [c.to_dict() for c in self.changes]}


@dataclass(frozen=True, slots=True)
class Outlier:
    node: Node
    cluster: str
    layer: str
    group: str
    majority: str


@dataclass(frozen=True, slots=True)
class Link:
    """A group and the group nearest to it (the differences are ``comparisons[(layer, nearest, group)]``)."""

    layer: str
    group: str
    nearest: str


@dataclass(frozen=True, slots=True)
class FleetReport:
    cluster_label: str
    snapshots: int
    superseded: int
    nodes: int
    groups: Mapping[str, tuple[Group, ...]]
    clusters: tuple[Cluster, ...]
    outliers: tuple[Outlier, ...]
    links: tuple[Link, ...]
    comparisons: Mapping[tuple[str, str, str], Comparison]
    rejected: tuple[Rejected, ...]
    splits: tuple[Split, ...] = ()

    def comparison(self, layer: str, a: str, b: str) -> Comparison:
        return self.comparisons[(layer, a, b)]

    def outlier_sets(self) -> list[tuple[str, str, str, str, list[Node]]]:
        """Outliers taken together: (cluster, layer, group, majority, nodes), since the
        nodes of one cluster that run one other group all differ from it alike."""
        sets: dict[tuple[str, str, str, str], list[Node]] = {}
        for o in self.outliers:
            sets.setdefault((o.cluster, o.layer, o.group, o.majority), []).append(o.node)
        return [(*key, nodes) for key, nodes in sets.items()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_label": self.cluster_label,
            "snapshots": self.snapshots,
            "superseded": self.superseded,
            "nodes": self.nodes,
            "layers": {
                layer: [
                    {"name": g.name, "id": g.id, "nodes": g.nodes, "representative": g.representative,
                     "description": g.description, "clusters": dict(g.clusters), "members": list(g.members)}
                    for g in groups
                ]
                for layer, groups in self.groups.items()
            },
            "clusters": [
                {"name": c.name or None, "nodes": c.nodes, "groups": {k: dict(v) for k, v in c.groups.items()},
                 "majority": dict(c.majority), "members": list(c.members)}
                for c in self.clusters
            ],
            "outliers": [
                {"node": o.node.name, "source": o.node.source, "cluster": o.cluster or None, "layer": o.layer,
                 "group": o.group, "majority": o.majority, "id": o.node.id,
                 "differs": change_lines(self.comparison(o.layer, o.majority, o.group).changes, o.majority, o.group)}
                for o in self.outliers
            ],
            "splits": [
                {"cluster": x.cluster or None, "layer": x.layer, "a": x.a, "b": x.b, "nodes_a": list(x.nodes_a),
                 "nodes_b": list(x.nodes_b),
                 "differs": change_lines(self.comparison(x.layer, x.a, x.b).changes, x.a, x.b)}
                for x in self.splits
            ],
            "links": [{"layer": k.layer, "group": k.group, "nearest": k.nearest} for k in self.links],
            "comparisons": [c.to_dict() for c in self.comparisons.values()],
            "rejected": [{"source": r.source, "error": r.error} for r in self.rejected],
        }


def analyze(fleet: Fleet, *, cluster_label: str = "cluster") -> FleetReport:
    """Group the fleet's nodes per layer and cluster, find outliers, compare groups."""
    groups: dict[str, tuple[Group, ...]] = {}
    names: dict[str, dict[str, str]] = {}  # layer -> layer id -> group name
    for layer in LAYERS:
        groups[layer] = _groups(fleet, layer, cluster_label)
        names[layer] = {g.id: g.name for g in groups[layer]}
    clusters, outliers = _clusters(fleet, names, cluster_label)
    splits = _splits(fleet, names, clusters, cluster_label)
    links = [link for layer in LAYERS for link in _links(layer, groups[layer], fleet.manifests)]
    by_name = {(g.layer, g.name): g for layer in LAYERS for g in groups[layer]}
    pairs = ({(o.layer, o.majority, o.group) for o in outliers} | {(k.layer, k.nearest, k.group) for k in links}
             | {(x.layer, x.a, x.b) for x in splits})
    comparisons = {}
    for layer, a, b in sorted(pairs):
        ma = fleet.manifests[by_name[(layer, a)].representative]
        mb = fleet.manifests[by_name[(layer, b)].representative]
        comparisons[(layer, a, b)] = Comparison(layer, a, b, changes_between(ma, mb, layers=(layer,)))
    return FleetReport(
        cluster_label=cluster_label, snapshots=fleet.snapshots, superseded=fleet.superseded,
        nodes=len(fleet.nodes), groups=groups, clusters=clusters, outliers=tuple(outliers),
        links=tuple(links), comparisons=comparisons, rejected=tuple(fleet.rejected), splits=tuple(splits),
    )


def _groups(fleet: Fleet, layer: str, cluster_label: str) -> tuple[Group, ...]:
    counts: Counter[str] = Counter()
    ids: dict[str, Counter[str]] = {}
    clusters: dict[str, Counter[str]] = {}
    members: dict[str, list[str]] = {}
    for n in fleet.nodes:
        key = n.layer_id(layer)
        counts[key] += 1
        members.setdefault(key, []).append(n.name)
        ids.setdefault(key, Counter())[n.id] += 1
        clusters.setdefault(key, Counter())[n.labels.get(cluster_label, UNLABELLED)] += 1
    ordered = sorted(counts, key=lambda k: (-counts[k], k))
    out = []
    for i, key in enumerate(ordered, 1):
        rep = min(ids[key], key=lambda mid: (-ids[key][mid], mid))
        m = fleet.manifests[rep]
        out.append(Group(
            layer=layer, name=f"{GROUP_PREFIX[layer]}{i}", id=key, nodes=counts[key], representative=rep,
            description=describe_software(m) if layer == "software" else describe_platform(m),
            clusters=dict(sorted(clusters[key].items())), members=tuple(sorted(members[key])),
        ))
    return tuple(out)


def _clusters(fleet: Fleet, names: Mapping[str, Mapping[str, str]],
              cluster_label: str) -> tuple[tuple[Cluster, ...], list[Outlier]]:
    members: dict[str, list[Node]] = {}
    for n in fleet.nodes:
        members.setdefault(n.labels.get(cluster_label, UNLABELLED), []).append(n)
    clusters: list[Cluster] = []
    outliers: list[Outlier] = []
    for cname in sorted(members):
        nodes = members[cname]
        per_layer: dict[str, dict[str, int]] = {}
        majority: dict[str, str | None] = {}
        for layer in LAYERS:
            counts = Counter(names[layer][n.layer_id(layer)] for n in nodes)
            per_layer[layer] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], _group_number(kv[0]))))
            top, top_count = max(counts.items(), key=lambda kv: (kv[1], -_group_number(kv[0])))
            # A majority is more than half the cluster; a cluster split more evenly
            # has no majority, and no node of it is called an outlier in that layer.
            majority[layer] = top if top_count * 2 > len(nodes) else None
            if majority[layer] is not None:
                outliers.extend(
                    Outlier(node=n, cluster=cname, layer=layer, group=names[layer][n.layer_id(layer)], majority=top)
                    for n in nodes if names[layer][n.layer_id(layer)] != top
                )
        clusters.append(Cluster(name=cname, nodes=len(nodes), groups=per_layer, majority=majority,
                                members=tuple(sorted(n.name for n in nodes))))
    outliers.sort(key=lambda o: (o.cluster, o.node.name, LAYERS.index(o.layer)))
    return tuple(clusters), outliers


def _splits(fleet: Fleet, names: Mapping[str, Mapping[str, str]], clusters: tuple[Cluster, ...],
            cluster_label: str) -> list[Split]:
    """The groups of a cluster without a majority in a layer, each against its largest
    one: no node of such a cluster is an outlier, yet its environments differ somewhere."""
    splits: list[Split] = []
    for c in clusters:
        for layer in LAYERS:
            if c.majority[layer] is not None or len(c.groups[layer]) < 2:
                continue
            nodes: dict[str, list[str]] = {}
            for n in fleet.nodes:
                if n.labels.get(cluster_label, UNLABELLED) == c.name:
                    nodes.setdefault(names[layer][n.layer_id(layer)], []).append(n.name)
            first, *others = list(c.groups[layer])
            splits.extend(Split(c.name, layer, first, other, tuple(sorted(nodes[first])), tuple(sorted(nodes[other])))
                          for other in others)
    return splits


def _group_number(name: str) -> int:
    return int(name[1:])


def _links(layer: str, groups: tuple[Group, ...], manifests: Mapping[str, Manifest]) -> list[Link]:
    """Attach every group to its nearest group: a minimum spanning tree (Prim's), rooted at
    the largest group, over a cheap distance. Each group is then described by the fewest
    differences that separate it from some other group."""
    if len(groups) < 2:
        return []
    if len(groups) > NEAREST_LIMIT:
        return [Link(layer, g.name, groups[0].name) for g in groups[1:]]
    # Each fact is numbered once: the distances below compare sets of small integers,
    # not of tuples of strings (a few hundred thousand comparisons for 50 groups).
    numbers: dict[tuple[str, str, str], int] = {}
    facts = [frozenset([numbers.setdefault(f, len(numbers)) for f in features(manifests[g.representative], layer)])
             for g in groups]
    best = {i: (len(facts[0] ^ facts[i]), 0) for i in range(1, len(groups))}
    links = []
    while best:
        i = min(best, key=lambda j: (best[j][0], j))
        _, parent = best.pop(i)
        links.append(Link(layer, groups[i].name, groups[parent].name))
        for j, (dist, _) in best.items():
            d = len(facts[i] ^ facts[j])
            if d < dist:
                best[j] = (d, i)
    return links


# -- short descriptions ------------------------------------------------------------------


def describe_software(m: Manifest) -> str:
    """A few words that tell environments apart: OS, Python, key packages, CUDA."""
    s = m.sections
    parts = []
    os_ = s.get("os") or {}
    if os_.get("pretty_name") or os_.get("id"):
        parts.append(str(os_.get("pretty_name") or os_.get("id")))
    if m.python:
        parts += m.python.brief()
    cuda = s.get("cuda") or {}
    if cuda.get("version"):
        parts.append(f"CUDA {cuda['version']}")
    if m.conda:
        parts += m.conda.brief()
    return ", ".join(parts) or "(no software sections)"


def describe_platform(m: Manifest) -> str:
    """A few words that tell platforms apart: GPUs and driver, CPU, memory, kernel."""
    s = m.sections
    parts = []
    gpu = s.get("gpu") or {}
    devices = [d.get("name") or "GPU" for d in gpu.get("devices") or [] if isinstance(d, dict)]
    if devices:
        parts.append(", ".join(f"{n} x{c}" for n, c in Counter(devices).items()))
        if gpu.get("driver_version"):
            parts.append(f"driver {gpu['driver_version']}")
    cpu = s.get("cpu") or {}
    if cpu.get("model"):
        parts.append(str(cpu["model"]) + (f" x{cpu['logical_cpus']}" if cpu.get("logical_cpus") else ""))
    memory = s.get("memory") or {}
    if memory.get("total_gib") is not None:
        parts.append(f"{memory['total_gib']} GiB")
    kernel = s.get("kernel") or {}
    if kernel.get("release"):
        parts.append(f"kernel {kernel['release']}")
    return ", ".join(parts) or "(no platform sections)"


# -- terminal --------------------------------------------------------------------------


def change_lines(changes: tuple[Change, ...], a: str = "A", b: str = "B", limit: int = 4) -> list[str]:
    """Short lines for a list of changes (``!``: likely to change numerical results): each
    change when there are few, else a line per section."""
    from .diff import describe, section_summary

    if len(changes) > limit:
        return section_summary(changes, a, b)
    return [("! " if c.sensitive else "") + describe(c, a, b) for c in changes]


def headline(report: FleetReport) -> str:
    clusters = [c for c in report.clusters if c.name != UNLABELLED]
    text = (f"{report.nodes} nodes in {len(clusters)} cluster{'s' if len(clusters) != 1 else ''} "
            f"(label {report.cluster_label!r}); {len(report.groups['software'])} environments, "
            f"{len(report.groups['platform'])} platforms; {len(report.outliers)} outlier"
            f"{'s' if len(report.outliers) != 1 else ''}")
    if report.superseded:
        text += f"; {report.superseded} older snapshots of the same hosts left out"
    return text


def print_report(report: FleetReport, console: Any = None) -> None:
    """The report as rich tables on the terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..capture.summary import short
    from ..core.text import terminal_safe

    def table(title: str, *columns: str) -> Any:
        t = Table(title=title, title_justify="left", box=None, header_style="bold")
        for col in columns:
            t.add_column(col)
        return t

    def row(t: Any, *cells: str) -> None:
        # Text: names and paths are not rich markup; terminal-safe: nor escape sequences.
        t.add_row(*(Text("\n".join(terminal_safe(line) for line in c.split("\n"))) for c in cells))

    console = console or Console()
    console.print(Text(terminal_safe(headline(report))))
    for layer, title in (("software", "Environments (software layer)"), ("platform", "Platforms (platform layer)")):
        t = table(title, "group", LAYER_KEY[layer], "nodes", "clusters", "description")
        for g in report.groups[layer]:
            row(t, g.name, short(g.id), f"{g.nodes}: {member_names(g.members)}", cluster_counts(g.clusters),
                g.description)
        console.print(t)
    t = table("Clusters (* the majority)", "cluster", "nodes", "environments", "platforms")
    for c in report.clusters:
        row(t, c.name or "(no label)", f"{c.nodes}: {member_names(c.members)}",
            *(_cluster_groups(c, layer) for layer in LAYERS))
    console.print(t)
    if report.splits:
        t = table("Split clusters: environments of one cluster, no majority", "cluster", "layer", "groups",
                  "what separates them")
        for x in report.splits:
            changes = report.comparison(x.layer, x.a, x.b).changes
            row(t, x.cluster or "(no label)", x.layer,
                f"{x.a}: {member_names(x.nodes_a)}\n{x.b}: {member_names(x.nodes_b)}",
                "\n".join(change_lines(changes, x.a, x.b)))
        console.print(t)
    if report.outliers:
        t = table("Outliers: nodes that differ from their cluster's majority",
                  "cluster", "layer", "group", "nodes", "what differs from the majority")
        for cluster, layer, group, majority, nodes in report.outlier_sets():
            changes = report.comparison(layer, majority, group).changes
            row(t, cluster or "(no label)", layer, f"{group} (majority {majority})", node_names(nodes),
                "\n".join(change_lines(changes, majority, group)))
        console.print(t)
    if report.links:
        t = table("Between groups: each group against its nearest", "layer", "group", "nearest", "what separates them")
        for k in report.links:
            changes = report.comparison(k.layer, k.nearest, k.group).changes
            row(t, k.layer, k.group, k.nearest, "\n".join(change_lines(changes, k.nearest, k.group)))
        console.print(t)
    for r in report.rejected:
        console.print(Text(f"rejected: {r.error}", style="red"))


def node_names(nodes: list[Node], limit: int = 6) -> str:
    names = ", ".join(n.name for n in nodes[:limit])
    return names + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")


def member_names(names: Iterable[str], limit: int = 6) -> str:
    listed = list(names)
    text = ", ".join(listed[:limit])
    return text + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


def cluster_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name or '(no label)'} {n}" for name, n in counts.items())


def _cluster_groups(c: Cluster, layer: str) -> str:
    return ", ".join(f"{g} {n}{'*' if c.majority[layer] == g else ''}" for g, n in c.groups[layer].items())
