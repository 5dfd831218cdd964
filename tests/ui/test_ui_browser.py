"""envcap ui in a real browser: Debian's headless chromium driven by Playwright, against
``envcap ui`` serving a store of runs recorded by ``envcap run``.

Screenshots go to $ENVCAP_UI_SCREENSHOTS (default: a folder under pytest's temporary
directory, printed at the end of the run) for a person to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ui_support import envcap_run, experiment_records, joint_sweep_records, write_numpy_pair, write_synthetic

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium (scripts/testbed.sh up installs it)")
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Each payload, if it ever ran, would set window.__xss.
PAYLOADS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=2">',
    "'><svg onload=window.__xss=3>",
    "</script><script>window.__xss=4</script>",
]
EVIL = "".join(PAYLOADS)

WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def serve(home: Path) -> tuple[subprocess.Popen[str], str]:
    """``envcap ui --port 0`` over ``home``; the process and the address it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "envcap", "ui", "--store", str(home), "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "ENVCAP_HOME": str(home)})
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if found:
            return proc, found.group(0)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"envcap ui did not start: {proc.stderr.read()}")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("ENVCAP_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nenvcap ui screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        context.add_init_script(WATCH)
        yield context
        context.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three runs by ``envcap run`` (one with a hostile parameter, note, label and metric
    name), a sweep of 120 synthetic runs, and issue 22's sweep of 150 (lr × depth jointly,
    batch_size alone, not dropout; with resources)."""
    home = tmp_path_factory.mktemp("ui-browser")
    work = tmp_path_factory.mktemp("ui-browser-project")
    (work / "train.py").write_text(
        "import os, envcap\n"
        "lr = float(os.environ['LR'])\n"
        "with envcap.start_run(params={'lr': lr}):\n"
        "    for step in range(12):\n"
        "        envcap.log_metric('loss', 1.0 / (1 + step * lr), step=step)\n"
        "    envcap.log_metric(os.environ.get('METRIC', 'acc'), 0.5 + lr, step=11)\n")
    ids = [envcap_run(home, work, "--param", f"batch={b}", "--label", "experiment=demo", "--note", "a plain note",
                      "--", sys.executable, "train.py", env={"LR": str(lr)}) for lr, b in ((0.1, 32), (0.3, 64))]
    evil = envcap_run(home, work, "--param", f"comment={EVIL}", "--label", f"who={EVIL}", "--note", EVIL, "--",
                      sys.executable, "train.py", env={"LR": "0.2", "METRIC": EVIL})
    write_synthetic(home, experiment_records(120))
    write_synthetic(home, joint_sweep_records(150))
    # A sweep whose parameter name and categorical values are hostile: on the axes of the
    # importance, the interaction heatmap, the partial dependence and parallel coordinates.
    hostile = joint_sweep_records(20, seed=9, start_ms=1_780_000_000_000)
    hostile = [r.evolve(labels={"experiment": "hostile"},
                        params=(*r.params, type(r.params[0])(name=EVIL, value=PAYLOADS[i % 2], source="user")))
               for i, r in enumerate(hostile)]
    write_synthetic(home, hostile)
    numpy_pair = write_numpy_pair(home)
    proc, url = serve(home)
    yield {"home": home, "ids": ids, "evil": evil, "url": url, "numpy_pair": numpy_pair}
    proc.terminate()
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()


def visit(browser: Any, url: str) -> Any:
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    page.goto(url)
    page.wait_for_load_state("load")
    return page


def assert_nothing_ran(page: Any) -> None:
    assert page.dialogs == []
    assert page.evaluate("window.__xss") is None
    # Not even the policy had to stop anything: what the page holds is text.
    assert page.evaluate("window.__violations") == []


def test_runs_page_filter_open_compare_and_importance(browser, store, shots) -> None:
    page = visit(browser, store["url"])
    assert page.inner_text("#count").startswith("runs 1–50 of 295")
    page.screenshot(path=str(shots / "runs.png"))

    page.fill("#new-where", "labels.experiment=demo")
    page.click("#apply")
    page.wait_for_url(re.compile(r"where=labels\.experiment"))
    rows = page.locator("table#runs tbody tr")
    assert rows.count() == 2
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.run)")) == sorted(store["ids"])
    page.click("a.sort:has-text('acc')")
    assert page.locator("table#runs tbody tr").first.get_attribute("data-run") == store["ids"][1]  # acc 0.8 first
    page.screenshot(path=str(shots / "runs-filtered.png"))

    page.check(f"input[value='{store['ids'][0]}']")
    page.check(f"input[value='{store['ids'][1]}']")
    page.click("#compare")
    page.wait_for_url(re.compile(r"/compare\?"))
    assert page.locator("#compare-params tr.differs th", has_text="lr").count() == 1
    page.wait_for_selector("[data-chart='overlay'][data-drawn] canvas")
    assert "identical environments" in page.inner_text("#envdiff-1")
    assert_nothing_ran(page)
    page.screenshot(path=str(shots / "compare.png"), full_page=True)

    page.click(f"a[href='/runs/{store['ids'][0]}']")
    page.wait_for_selector("#run-id")
    assert page.inner_text("#run-id") == store["ids"][0]
    assert "a plain note" in page.inner_text("#notes")
    page.wait_for_selector("#curves-chart[data-drawn] canvas")
    assert page.locator("#manifest-link").count() == 1
    assert_nothing_ran(page)
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    page = visit(browser, store["url"] + "experiment?where=labels.experiment%3Dsweep&metric=score")
    page.wait_for_selector("#importance-chart[data-drawn] canvas")
    page.wait_for_selector("#parallel-chart[data-drawn] canvas")
    page.wait_for_selector("#scatter-chart[data-drawn] canvas")
    ranked = page.locator("table#importance tr td:first-child").all_inner_texts()
    assert set(ranked[:2]) == {"lr", "depth"}
    assert_nothing_ran(page)
    page.screenshot(path=str(shots / "experiment.png"), full_page=True)

    a, b = store["numpy_pair"]
    page = visit(browser, store["url"] + f"compare?run={a}&run={b}")
    marked = page.locator("#envdiff-1 tr.sensitive", has_text="numpy")
    assert marked.count() == 1 and marked.locator(".mark").inner_text() == "!"
    assert_nothing_ran(page)
    page.screenshot(path=str(shots / "compare-env.png"), full_page=True)

    page = visit(browser, store["url"] + "?where=labels.experiment%3Dsweep&sort=-metrics.score&limit=20")
    scores = page.locator("table#runs td.metric").all_inner_texts()
    assert len(scores) == 20 and [float(x) for x in scores] == sorted((float(x) for x in scores), reverse=True)
    page.screenshot(path=str(shots / "runs-sweep.png"))

    page = visit(browser, store["url"] + "fleet")
    page.wait_for_selector("[data-chart='matrix'][data-drawn] canvas")
    assert_nothing_ran(page)
    page.screenshot(path=str(shots / "fleet.png"))


def test_hostile_strings_render_as_text_and_nothing_executes(browser, store, shots) -> None:
    evil = store["evil"]
    pages = {
        "runs": store["url"] + "?where=params.comment~window.__xss",
        "run": store["url"] + f"runs/{evil}",
        "compare": store["url"] + f"compare?run={evil}&run={store['ids'][0]}",
        "experiment": store["url"] + "experiment?where=command~train.py",
        "experiment-sweep": store["url"] + "experiment?where=labels.experiment%3Dhostile&metric=score",
    }
    for name, url in pages.items():
        page = visit(browser, url)
        page.wait_for_timeout(300)  # let the charts draw
        assert_nothing_ran(page)
        if name == "runs":
            cell = page.locator("table#runs td.param").first.inner_text()
            assert cell == EVIL
        if name == "run":
            assert page.locator("#params td.mono").first.inner_text() == EVIL
            assert page.inner_text("#notes .text") == EVIL
            assert EVIL in page.locator("#metrics td").all_inner_texts()
            assert page.locator("img[src='x'], svg[onload]").count() == 0
        if name == "experiment":
            assert EVIL in page.locator("#metric option").all_inner_texts()
        if name == "experiment-sweep":
            page.wait_for_selector("#interaction-chart[data-drawn] canvas")
            assert EVIL in page.locator("table#importance tr td:first-child").all_inner_texts()
            assert any(EVIL in t for t in page.locator("table#interactions tr td:first-child").all_inner_texts())
        page.screenshot(path=str(shots / f"xss-{name}.png"), full_page=True)


def test_the_runs_table_fits_a_1400_px_window_and_names_each_runs_host(browser, store, shots) -> None:
    # The runs page with every column the store fills: six parameters, the metrics,
    # commands, hosts; the first page, sorted by the default and by a metric.
    for query in ("", "?sort=-metrics.score"):
        page = visit(browser, store["url"] + query)
        page.set_viewport_size({"width": 1400, "height": 900})
        page.wait_for_timeout(200)
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth,"
                               " document.querySelector('table#runs').getBoundingClientRect().right,"
                               " window.innerWidth]")
        wide = page.evaluate("() => Array.from(document.querySelectorAll('body *')).filter(e => "
                             "e.getBoundingClientRect().right > window.innerWidth).slice(0, 5).map(e => "
                             "e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))")
        assert max(widths[:3]) <= widths[3] == 1400, (widths, wide)
        headers = page.locator("table#runs thead th").all_inner_texts()
        assert any(h.strip().startswith("host") for h in headers), headers
        hosts = page.locator("table#runs td.host").all_inner_texts()
        assert hosts and all(h.strip() for h in hosts), hosts
        # Nothing the table shows in full is cut: each run id is whole.
        ids = page.locator("table#runs td.id").all_inner_texts()
        assert ids and all(len(i.strip()) == 26 for i in ids), ids
        cut = page.evaluate("() => Array.from(document.querySelectorAll('table#runs td.id, table#runs td.started,"
                            " table#runs td.time')).filter(td => td.scrollWidth > td.clientWidth).map(td => td.className + ' ' + td.innerText)")
        assert cut == [], cut[:5]
        page.screenshot(path=str(shots / f"runs-1400{query.replace('?', '-').replace('=', '-')}.png"))


def test_the_fleet_colour_legend_stands_clear_of_the_axis_labels(browser, store, shots) -> None:
    page = visit(browser, store["url"] + "fleet")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.wait_for_selector("[data-chart='matrix'][data-drawn] canvas")
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll("[data-chart='matrix']")).map(el => {
        const chart = echarts.getInstanceByDom(el);
        const legend = chart.getViewOfComponentModel(chart.getModel().getComponent('visualMap')).group;
        const box = legend.getBoundingRect().clone();
        box.applyTransform(legend.getComputedTransform());
        const grid = chart.getModel().getComponent('grid').coordinateSystem.getRect();
        return {legend: [box.x, box.y, box.width, box.height], grid: [grid.x, grid.y, grid.width, grid.height]};
    })""")
    assert boxes
    for b in boxes:
        lx, ly, lw, lh = b["legend"]
        gx, gy, gw, gh = b["grid"]
        # Right of the plotting area: not under it among the x axis's labels, nor left
        # of it among the y axis's.
        assert lx >= gx + gw, b
    page.screenshot(path=str(shots / "fleet-1400.png"))


def test_experiment_page_importance_interactions_and_pareto_front(browser, store, shots) -> None:
    """Issue 22's page: fANOVA named and ranking dropout last, Friedman's H heatmap with
    (depth, lr) first, the 2-D partial dependence over that pair on a log lr axis, lr's
    parallel axis logarithmic, the constant parameter listed, the Pareto front against GPU
    memory; then the permutation importance chosen from the form."""
    page = visit(browser, store["url"] + "experiment?where=labels.experiment%3Djoint&metric=score")
    for chart in ("importance", "interaction", "pd", "parallel", "scatter"):
        page.wait_for_selector(f"#{chart}-chart[data-drawn] canvas")
    assert "fANOVA" in page.inner_text("#importance-method")
    assert "FanovaImportanceEvaluator" in page.inner_text("#importance-method")
    ranked = page.locator("table#importance tr td:first-child").all_inner_texts()
    assert ranked[-1] == "dropout" and len(ranked) == 4
    spreads = [float(x) for x in page.locator("table#importance tr td:nth-child(3)").all_inner_texts()]
    assert len(spreads) == 4 and max(spreads) > 0
    assert "epochs" in page.inner_text("#constant")
    assert "Friedman's H" in page.inner_text("#interaction-method")
    pairs = page.locator("table#interactions tr td:first-child").all_inner_texts()
    assert pairs[0] == "depth × lr" and len(pairs) == 6
    strengths = [float(x) for x in page.locator("table#interactions tr td:nth-child(2)").all_inner_texts()]
    assert strengths[0] >= 2 * strengths[1]
    assert "depth and lr" in page.inner_text("#pd-title")
    # What the charts were given: the heatmap's cells, a log axis where the values span decades.
    option = "(id) => echarts.getInstanceByDom(document.getElementById(id)).getOption()"
    heat = page.evaluate(option, "interaction-chart")
    assert len(heat["series"][0]["data"]) == 12  # every ordered pair of the four parameters
    pd = page.evaluate(option, "pd-chart")
    assert "lr (log scale)" in (pd["xAxis"][0]["name"], pd["yAxis"][0]["name"])
    parallel = page.evaluate(option, "parallel-chart")
    axes = {a["name"]: a["type"] for a in parallel["parallelAxis"]}
    assert axes["lr (log)"] == "log" and axes["dropout"] == "value"
    page.screenshot(path=str(shots / "experiment-interactions.png"), full_page=True)

    page.select_option("#resource", "resources.gpu.peak_memory_mib")
    page.click("#apply")
    page.wait_for_url(re.compile(r"resource=resources\.gpu\.peak_memory_mib"))
    page.wait_for_selector("#scatter-chart[data-drawn] canvas")
    assert "GPU memory (MiB)" in page.inner_text("#pareto")
    front = page.locator("table#pareto td.id a").all_inner_texts()
    scatter = page.evaluate(option, "scatter-chart")
    assert [s["name"] for s in scatter["series"]] == ["runs", "Pareto front"]
    assert len(scatter["series"][1]["data"]) == len(front) >= 1
    cost = [float(x) for x in page.locator("table#pareto td:nth-child(2)").all_inner_texts()]
    score = [float(x) for x in page.locator("table#pareto td:nth-child(3)").all_inner_texts()]
    assert cost == sorted(cost) and score == sorted(score)  # cheapest first, each better than the last
    assert_nothing_ran(page)
    page.screenshot(path=str(shots / "experiment-pareto.png"), full_page=True)

    page.select_option("#method", "permutation")
    page.click("#apply")
    page.wait_for_url(re.compile(r"method=permutation"))
    page.wait_for_selector("#importance-chart[data-drawn] canvas")
    assert "permutation" in page.inner_text("#importance-method")
    assert page.locator("table#importance tr td:first-child").all_inner_texts()[-1] == "dropout"
    assert_nothing_ran(page)
