// envcap ui: draws the charts of a page from the JSON blocks the server rendered.
// Every text shown comes from the data through ECharts' canvas renderer (tooltips in
// its rich-text mode), never through innerHTML, so no run's string becomes markup.
"use strict";

(function () {
  function read(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var tooltip = { trigger: "item", renderMode: "richText", confine: true };

  function shortId(id) { return id.slice(-8); }

  var draw = {
    // One run: each metric's points.
    curves: function (d) {
      var names = Object.keys(d.series);
      return {
        tooltip: { trigger: "axis", renderMode: "richText", confine: true },
        legend: { data: names, type: "scroll" },
        xAxis: { type: "value", name: "step" },
        yAxis: { type: "value", scale: true },
        series: names.map(function (n) { return { name: n, type: "line", showSymbol: d.series[n].length < 30, data: d.series[n] }; })
      };
    },
    // Several runs: one metric's curves overlaid.
    overlay: function (d) {
      return {
        tooltip: { trigger: "axis", renderMode: "richText", confine: true },
        legend: { data: d.series.map(function (s) { return shortId(s.run); }) },
        xAxis: { type: "value", name: "step" },
        yAxis: { type: "value", scale: true, name: d.metric },
        series: d.series.map(function (s) {
          return { name: shortId(s.run), type: "line", showSymbol: s.points.length < 30, data: s.points };
        })
      };
    },
    // Importance: one bar per parameter (the mean over the fits), a whisker of ± the spread.
    importance: function (d) {
      var params = d.params.slice().reverse();
      return {
        tooltip: tooltip,
        grid: { left: 140 },
        xAxis: { type: "value", name: "importance", min: 0 },
        yAxis: { type: "category", data: params.map(function (p) { return p.name; }) },
        series: [
          { type: "bar", name: "importance", data: params.map(function (p) { return p.importance; }) },
          {
            type: "custom", name: "spread", silent: true, encode: { x: [0, 2], y: 1 },
            data: params.map(function (p, i) { return [Math.max(0, p.importance - p.spread), i, p.importance + p.spread]; }),
            renderItem: function (params, api) {
              var lo = api.coord([api.value(0), api.value(1)]), hi = api.coord([api.value(2), api.value(1)]);
              var h = api.size([0, 1])[1] * 0.25, style = { stroke: "#1d232a", lineWidth: 1.5 };
              return { type: "group", children: [
                { type: "line", shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style: style },
                { type: "line", shape: { x1: lo[0], y1: lo[1] - h, x2: lo[0], y2: lo[1] + h }, style: style },
                { type: "line", shape: { x1: hi[0], y1: hi[1] - h, x2: hi[0], y2: hi[1] + h }, style: style }
              ] };
            }
          }
        ]
      };
    },
    // Interactions: the strength of every pair of parameters.
    interactions: function (d) {
      var cells = [], max = 0;
      d.matrix.forEach(function (row, i) {
        row.forEach(function (h, j) { if (i !== j) { cells.push([j, i, h]); if (h > max) { max = h; } } });
      });
      return {
        tooltip: tooltip,
        grid: { left: 120, bottom: 90, right: 30 },
        xAxis: { type: "category", data: d.params, axisLabel: { rotate: 30 } },
        yAxis: { type: "category", data: d.params },
        visualMap: { min: 0, max: max || 1, orient: "horizontal", left: "center", bottom: 0, calculable: true,
                     precision: 3, text: ["H", ""], inRange: { color: ["#f7fbff", "#6baed6", "#08306b"] } },
        series: [{ type: "heatmap", name: "H", data: cells,
                   label: { show: true, formatter: function (p) { return p.value[2].toPrecision(2); } } }]
      };
    },
    // The metric's partial dependence on two parameters (grids log-spaced for log ones).
    pd: function (d) {
      var pd = d.pd, cells = [], lo = Infinity, hi = -Infinity;
      pd.z.forEach(function (row, i) {
        row.forEach(function (z, j) { cells.push([i, j, z]); lo = Math.min(lo, z); hi = Math.max(hi, z); });
      });
      function ticks(a) {
        return a.values.map(function (v) { return typeof v === "number" ? Number(v.toPrecision(3)).toString() : String(v); });
      }
      function name(a) { return a.kind === "log" ? a.name + " (log scale)" : a.name; }
      return {
        tooltip: tooltip,
        grid: { left: 110, bottom: 130, right: 30 },
        xAxis: { type: "category", name: name(pd.x), nameLocation: "middle", nameGap: 45, data: ticks(pd.x),
                 axisLabel: { rotate: 30 } },
        yAxis: { type: "category", name: name(pd.y), nameLocation: "middle", nameGap: 80, data: ticks(pd.y) },
        visualMap: { min: lo, max: hi, orient: "horizontal", left: "center", bottom: 0, calculable: true,
                     precision: 3, text: [d.metric, ""], inRange: { color: ["#3b4cc0", "#dddddd", "#b40426"] } },
        series: [{ type: "heatmap", name: d.metric, data: cells }]
      };
    },
    parallel: function (d) {
      var last = d.axes.length - 1;
      var values = d.rows.map(function (r) { return r.values[last]; });
      return {
        tooltip: tooltip,
        parallelAxis: d.axes.map(function (a, i) {
          var axis = { dim: i, name: a.name };
          if (a.categories) { axis.type = "category"; axis.data = a.categories; }
          else if (a.log) { axis.type = "log"; axis.name = a.name + " (log)"; }
          else { axis.type = "value"; axis.scale = true; }
          return axis;
        }),
        parallel: { left: 60, right: 90, bottom: 40, top: 60 },
        visualMap: {
          type: "continuous", dimension: last, min: Math.min.apply(null, values),
          max: Math.max.apply(null, values), right: 0, top: "middle", calculable: true,
          text: [d.axes[last].name, ""], inRange: { color: ["#3b4cc0", "#dddddd", "#b40426"] }
        },
        series: [{
          type: "parallel", lineStyle: { width: 1, opacity: 0.6 },
          data: d.rows.map(function (r) { return { name: shortId(r.run), value: r.values }; })
        }]
      };
    },
    // The metric against a resource: every run, and the Pareto front marked and joined.
    scatter: function (d) {
      var front = d.points.filter(function (p) { return p.front; }).sort(function (a, b) { return a.x - b.x; });
      function point(p) { return { name: shortId(p.run), value: [p.x, p.y] }; }
      return {
        tooltip: tooltip,
        legend: { data: ["runs", "Pareto front"] },
        xAxis: d.log_x ? { type: "log", name: d.x + " (log)" } : { type: "value", name: d.x, scale: true },
        yAxis: { type: "value", name: d.y, scale: true },
        series: [
          { name: "runs", type: "scatter", symbolSize: 6, itemStyle: { color: "#6b8fb5", opacity: 0.7 },
            data: d.points.filter(function (p) { return !p.front; }).map(point) },
          { name: "Pareto front", type: "line", step: "end", symbolSize: 9, itemStyle: { color: "#b3261e" },
            lineStyle: { color: "#b3261e", width: 1.5 }, data: front.map(point) }
        ]
      };
    },
    // The fleet: clusters by environment groups, nodes in each cell.
    matrix: function (d) {
      var cells = [], max = 1;
      d.clusters.forEach(function (c, y) {
        c.counts.forEach(function (n, x) { cells.push([x, y, n]); if (n > max) { max = n; } });
      });
      return {
        tooltip: tooltip,
        // The colour scale stands to the right of the matrix, clear of both axes' labels.
        grid: { left: 120, right: 110, bottom: 40 },
        xAxis: { type: "category", data: d.groups.map(function (g) { return g.name; }) },
        yAxis: { type: "category", data: d.clusters.map(function (c) { return c.name || "(none)"; }) },
        visualMap: { min: 0, max: max, orient: "vertical", right: 10, top: "middle", calculable: true,
                     text: ["nodes", ""] },
        series: [{ type: "heatmap", data: cells, label: { show: true } }]
      };
    }
  };

  function start() {
    if (typeof echarts === "undefined") { return; }
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var kind = el.getAttribute("data-chart");
      var d = read(el.getAttribute("data-source"));
      if (!d || !draw[kind]) { return; }
      var chart = echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(Object.assign({ animation: false }, draw[kind](d)));
      el.setAttribute("data-drawn", "1");
      charts.push(chart);
    });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
    document.documentElement.setAttribute("data-charts", String(charts.length));
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();
