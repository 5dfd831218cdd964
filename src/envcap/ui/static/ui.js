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
    importance: function (d) {
      var params = d.params.slice().reverse();
      return {
        tooltip: tooltip,
        grid: { left: 140 },
        xAxis: { type: "value", name: "importance", max: 1 },
        yAxis: { type: "category", data: params.map(function (p) { return p.name; }) },
        series: [{ type: "bar", data: params.map(function (p) { return p.importance; }) }]
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
    scatter: function (d) {
      return {
        tooltip: tooltip,
        xAxis: { type: "value", name: d.x, scale: true },
        yAxis: { type: "value", name: d.y, scale: true },
        series: [{
          type: "scatter", symbolSize: 7,
          data: d.points.map(function (p) { return { name: shortId(p.run), value: [p.x, p.y] }; })
        }]
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
