"""``envcap ui``: a read-only web page (and JSON API) over the store.

- :mod:`.data` reads runs, comparisons, experiments and the fleet through the store's
  own functions (so it works on any backend) and returns plain JSON values;
- :mod:`.importance` estimates which parameters matter for a metric;
- :mod:`.api` serves those values under ``/api`` (described by ``openapi.json``);
- :mod:`.app` renders the same values as pages (Jinja2, autoescaped) with charts drawn
  by Apache ECharts, shipped in ``static/``: the page needs no network.

Nothing here writes to the store.
"""
