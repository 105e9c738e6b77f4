// `compsearch report`'s HTML: one self-contained file (inline CSS, SVG and a little JS, no
// external resource). Every text from the study goes through html_escape.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "compressors/recipe.h"
#include "experiments/results.h"
#include "search/study.h"

namespace compsearch::experiments {

using nlohmann::json;

namespace {

std::string num(double v, int digits = 4) {
  if (!std::isfinite(v)) return "";
  std::ostringstream os;
  os.precision(digits);
  os << v;
  return os.str();
}

struct PlotPoint {
  double x, y;
  std::string cls;  // "front", "trial" or "baseline"
  int64_t trial = -1;
  std::string title;
  std::string label;  // drawn beside the point (baselines)
};

// One scatter plot (optionally with a line through the points in order) as inline SVG.
std::string svg_plot(const std::string& css_class, const std::string& xlabel,
                     const std::string& ylabel, const std::vector<PlotPoint>& points,
                     bool line = false) {
  const double W = 520, H = 340, L = 64, R = 16, T = 16, B = 48;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& p : points) {
    x0 = std::min(x0, p.x), x1 = std::max(x1, p.x);
    y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
  }
  if (points.empty()) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 <= 0) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 <= 0) y0 -= 0.5, y1 += 0.5;
  const double px = (x1 - x0) * 0.05, py = (y1 - y0) * 0.05;
  x0 -= px, x1 += px, y0 -= py, y1 += py;
  auto sx = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto sy = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  std::ostringstream os;
  os << "<svg class=\"plot " << html_escape(css_class) << "\" xmlns=\"http://www.w3.org/2000/svg\" "
     << "width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H << "\">\n";
  os << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\""
     << H - T - B << "\" class=\"frame\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    os << "<text class=\"tick\" x=\"" << sx(xv) << "\" y=\"" << H - B + 14
       << "\" text-anchor=\"middle\">" << num(xv, 3) << "</text>\n";
    os << "<text class=\"tick\" x=\"" << L - 4 << "\" y=\"" << sy(yv) + 4
       << "\" text-anchor=\"end\">" << num(yv, 3) << "</text>\n";
  }
  os << "<text class=\"label\" x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 8
     << "\" text-anchor=\"middle\">" << html_escape(xlabel) << "</text>\n";
  os << "<text class=\"label\" transform=\"translate(14," << (T + H - B) / 2
     << ") rotate(-90)\" text-anchor=\"middle\">" << html_escape(ylabel) << "</text>\n";
  if (line && points.size() > 1) {
    os << "<polyline class=\"line\" points=\"";
    for (const auto& p : points) os << sx(p.x) << "," << sy(p.y) << " ";
    os << "\"/>\n";
  }
  // Dominated points first so the front is drawn on top, and baselines above both.
  auto pass_of = [](const PlotPoint& p) {
    return p.cls == "front" ? 1 : p.cls == "baseline" ? 2 : 0;
  };
  for (int pass = 0; pass < 3; ++pass) {
    for (const auto& p : points) {
      if (pass_of(p) != pass) continue;
      os << "<circle class=\"" << html_escape(p.cls) << "\"";
      if (p.trial >= 0) os << " data-trial=\"" << p.trial << "\"";
      os << " cx=\"" << sx(p.x) << "\" cy=\"" << sy(p.y) << "\" r=\"" << (pass == 0 ? 3 : 5)
         << "\"><title>" << html_escape(p.title) << "</title></circle>\n";
      if (!p.label.empty())
        os << "<text class=\"point-label\" x=\"" << sx(p.x) + 7 << "\" y=\"" << sy(p.y) - 7 << "\">"
           << html_escape(p.label) << "</text>\n";
    }
  }
  os << "</svg>\n";
  return os.str();
}

const char* kStyle = R"(
body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}
.plots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0}figcaption{font-size:13px;color:#555}
svg .frame{fill:#fafafa;stroke:#999}svg .tick{font-size:10px;fill:#555}
svg .label{font-size:12px;fill:#222}svg .line{fill:none;stroke:#1f77b4;stroke-width:2}
svg circle.trial{fill:#bbb;opacity:.8}svg circle.front{fill:#d62728;stroke:#fff}
svg circle.baseline{fill:#1f77b4;stroke:#fff}svg text.point-label{font-size:11px;fill:#1f77b4}
svg circle.measure{fill:#1f77b4;opacity:.8}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee;cursor:pointer;user-select:none}th.sorted-asc::after{content:" \25B2"}
th.sorted-desc::after{content:" \25BC"}td.name{text-align:left}
.bits{display:inline-block;height:12px;background:#1f77b4;vertical-align:middle}
.prune{display:inline-block;height:12px;background:#d62728;vertical-align:middle}
.meta{font-size:13px;color:#444}
)";

// Sorts a table.sortable by the clicked header (numbers numerically, empty cells last).
const char* kScript = R"(
document.querySelectorAll('table.sortable').forEach(function (table) {
  var headers = table.querySelectorAll('thead th');
  headers.forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('sorted-asc');
      headers.forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-value'), y = b.cells[col].getAttribute('data-value');
        var ex = x === null || x === '', ey = y === null || y === '';
        if (ex || ey) return ex === ey ? 0 : (ex ? 1 : -1);
        var nx = Number(x), ny = Number(y), c;
        if (!isNaN(nx) && !isNaN(ny)) c = nx - ny; else c = x < y ? -1 : (x > y ? 1 : 0);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
)";

std::string cell(const std::optional<double>& v, int digits = 5) {
  if (!v) return "<td data-value=\"\"></td>";
  std::ostringstream value;
  value.precision(17);
  value << *v;
  return "<td data-value=\"" + value.str() + "\">" + num(*v, digits) + "</td>";
}

}  // namespace

std::string report_html(const StudyResults& study, std::optional<int64_t> chosen) {
  const auto front = study_front(study);
  std::set<int64_t> front_numbers;
  for (const auto& t : front) front_numbers.insert(t.number);

  // The quality metric plotted on the y axis: accuracy when measured, else the first maximised
  // objective, else the first objective.
  std::string quality;
  for (const auto& t : study.trials)
    if (metric_of(t, "accuracy")) quality = "accuracy";
  if (quality.empty()) {
    for (size_t k = 0; k < study.directions.size() && quality.empty(); ++k)
      if (study.directions[k] == search::StudyDirection::kMaximize)
        quality = study.objective_names[k];
    if (quality.empty() && !study.objective_names.empty()) quality = study.objective_names[0];
  }
  std::vector<std::string> targets;
  if (study.config.is_object() && study.config.contains("targets") &&
      study.config["targets"].is_array())
    for (const auto& t : study.config["targets"])
      if (t.is_string()) targets.push_back(t.get<std::string>());

  size_t complete = 0, pruned = 0, failed = 0;
  for (const auto& t : study.trials) {
    complete += t.state == search::TrialState::kComplete;
    pruned += t.state == search::TrialState::kPruned;
    failed += t.state == search::TrialState::kFail;
  }

  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
     << "<title>compsearch report: " << html_escape(study.study_name) << "</title>\n"
     << "<style>" << kStyle << "</style>\n</head>\n<body>\n";
  os << "<h1>compsearch report: study &ldquo;" << html_escape(study.study_name) << "&rdquo;</h1>\n";
  os << "<p class=\"meta\">Storage " << html_escape(study.storage) << " &middot; "
     << study.trials.size() << " trials (" << complete << " complete, " << pruned << " pruned, "
     << failed << " failed) &middot; front " << front.size() << " trials &middot; objectives ";
  for (size_t k = 0; k < study.objective_names.size(); ++k)
    os << (k ? ", " : "") << html_escape(study.objective_names[k]) << " ("
       << (study.directions[k] == search::StudyDirection::kMaximize ? "max" : "min") << ")";
  if (study.config.is_object() && study.config.contains("model") &&
      study.config["model"].is_string())
    os << " &middot; model " << html_escape(study.config["model"].get<std::string>());
  os << "</p>\n";

  // Every complete trial with metric `x` and the quality, the front marked.
  auto trial_points = [&](const std::string& x) {
    std::vector<PlotPoint> pts;
    for (const auto& t : study.trials) {
      if (t.state != search::TrialState::kComplete) continue;
      const auto xv = metric_of(t, x), yv = metric_of(t, quality);
      if (!xv || !yv) continue;
      const bool f = front_numbers.count(t.number) > 0;
      pts.push_back({*xv, *yv, f ? "front" : "trial", t.number,
                     "trial " + std::to_string(t.number) + ": " + quality + " " + num(*yv, 5) +
                         ", " + x + " " + num(*xv, 5) + (f ? " (front)" : "")});
    }
    return pts;
  };
  // Pareto plot per target.
  os << "<h2 id=\"pareto\">Pareto plots</h2>\n<div class=\"plots\">\n";
  for (const auto& target : targets) {
    const std::string x = "latency_ms@" + target;
    std::vector<PlotPoint> pts = trial_points(x);
    os << "<figure data-target=\"" << html_escape(target) << "\">"
       << svg_plot("pareto", x, quality, pts) << "<figcaption>" << html_escape(target)
       << ": every complete trial (grey), the front (red)</figcaption></figure>\n";
  }
  // An LLM study: size against the loss, with llama.cpp's own mixes measured the same way.
  const bool llm = study.config.is_object() && study.config.value("llm", false);
  if (llm) {
    const std::string x = "size_bytes";
    std::vector<PlotPoint> pts = trial_points(x);
    for (const auto& [name, m] : study.baselines.items()) {
      if (!m.is_object() || !m.contains(x) || !m.contains(quality) || !m[x].is_number() ||
          !m[quality].is_number())
        continue;
      std::string upper = name;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      const double xv = m[x].get<double>(), yv = m[quality].get<double>();
      pts.push_back(
          {xv, yv, "baseline", -1,
           "llama.cpp " + upper + ": " + quality + " " + num(yv, 5) + ", " + x + " " + num(xv, 5),
           upper});
    }
    os << "<figure data-target=\"llm\">" << svg_plot("pareto", x, quality, pts)
       << "<figcaption>every complete trial (grey), the front (red), llama.cpp's mixes "
       << "(blue)</figcaption></figure>\n";
  }
  if (targets.empty() && !llm) os << "<p>The study's config lists no targets.</p>\n";
  os << "</div>\n";

  // Hypervolume against trials.
  {
    const auto hv = hypervolume_history(study);
    std::vector<PlotPoint> pts;
    for (size_t i = 0; i < hv.size(); ++i)
      pts.push_back({static_cast<double>(i + 1), hv[i], "measure", -1,
                     std::to_string(i + 1) + " trials: hypervolume " + num(hv[i], 6)});
    os << "<h2 id=\"hypervolume\">Hypervolume against trials</h2>\n<figure>"
       << svg_plot("hypervolume", "trials", "hypervolume", pts, true)
       << "<figcaption>hypervolume of the front of the first N trials (final "
       << (hv.empty() ? std::string("none") : num(hv.back(), 6)) << ")</figcaption></figure>\n";
  }

  // Subset (and proxy) against full measurement.
  {
    const std::string measured = quality;
    std::vector<PlotPoint> sub, proxy;
    for (const auto& t : study.trials) {
      if (t.state != search::TrialState::kComplete) continue;
      const auto full = metric_of(t, measured);
      if (!full) continue;
      const auto f = t.user_attrs.find("fidelity");
      if (f != t.user_attrs.end() && f->second.is_object() && f->second.contains("1") &&
          f->second["1"].is_number()) {
        const double s = f->second["1"].get<double>();
        sub.push_back({s, *full, "measure", t.number,
                       "trial " + std::to_string(t.number) + ": subset " + num(s, 5) + ", full " +
                           num(*full, 5)});
      }
      if (const auto p = metric_of(t, "proxy_accuracy"))
        proxy.push_back({*p, *full, "measure", t.number,
                         "trial " + std::to_string(t.number) + ": proxy " + num(*p, 5) + ", full " +
                             num(*full, 5)});
    }
    os << "<h2 id=\"fidelity\">Cheap estimates against the full measurement</h2>\n"
       << "<div class=\"plots\">\n";
    if (!sub.empty())
      os << "<figure>" << svg_plot("subset", "subset " + measured, "full " + measured, sub)
         << "<figcaption>validation subset (fidelity level 1) against full validation, "
         << sub.size() << " trials</figcaption></figure>\n";
    if (!proxy.empty())
      os << "<figure>" << svg_plot("proxy", "proxy_accuracy", "full " + measured, proxy)
         << "<figcaption>additive proxy against full validation, " << proxy.size()
         << " trials</figcaption></figure>\n";
    if (sub.empty() && proxy.empty()) os << "<p>No trial recorded a subset or proxy value.</p>\n";
    os << "</div>\n";
  }

  // The front as a sortable table.
  std::set<std::string> metric_names;
  for (const auto& t : front)
    for (const auto& [k, v] : t.user_attrs)
      if (v.is_number()) metric_names.insert(k);
  for (const auto& n : study.objective_names) metric_names.erase(n);
  os << "<h2 id=\"front\">The front (" << front.size()
     << " trials; click a header to sort)</h2>\n<table class=\"sortable\" id=\"front-table\">"
     << "<thead><tr><th>trial</th>";
  for (const auto& n : study.objective_names) os << "<th>" << html_escape(n) << "</th>";
  const bool has_test = !study.test_accuracy.empty();
  if (has_test) os << "<th>test accuracy</th>";
  for (const auto& m : metric_names) os << "<th>" << html_escape(m) << "</th>";
  os << "</tr></thead>\n<tbody>\n";
  for (const auto& t : front) {
    os << "<tr data-trial=\"" << t.number << "\">" << cell(static_cast<double>(t.number));
    for (size_t k = 0; k < study.objective_names.size(); ++k)
      os << cell(k < t.values.size() ? std::optional<double>(t.values[k]) : std::nullopt);
    if (has_test) {
      const auto key = std::to_string(t.number);
      os << cell(study.test_accuracy.contains(key) && study.test_accuracy[key].is_number()
                     ? std::optional<double>(study.test_accuracy[key].get<double>())
                     : std::nullopt);
    }
    for (const auto& m : metric_names) os << cell(metric_of(t, m));
    os << "</tr>\n";
  }
  os << "</tbody></table>\n";

  // The chosen recipe.
  const search::FrozenTrial* pick = nullptr;
  if (chosen) {
    for (const auto& t : study.trials)
      if (t.number == *chosen) pick = &t;
    if (!pick || pick->state != search::TrialState::kComplete || !pick->user_attrs.count("recipe"))
      throw std::invalid_argument("--trial " + std::to_string(*chosen) +
                                  " is not a COMPLETE trial with a recipe in study \"" +
                                  study.study_name + "\"");
  } else {
    double best = -std::numeric_limits<double>::infinity();
    const bool maximize_quality =
        !(std::find(study.objective_names.begin(), study.objective_names.end(), quality) !=
              study.objective_names.end() &&
          study.directions[std::find(study.objective_names.begin(), study.objective_names.end(),
                                     quality) -
                           study.objective_names.begin()] == search::StudyDirection::kMinimize);
    for (const auto& t : front) {
      const auto v = metric_of(t, quality);
      if (!v || !t.user_attrs.count("recipe")) continue;
      const double score = maximize_quality ? *v : -*v;
      if (!pick || score > best) pick = &t, best = score;
    }
  }
  os << "<h2 id=\"recipe\">Chosen recipe</h2>\n";
  if (!pick) {
    os << "<p>No front trial has a recipe.</p>\n";
  } else if (llm) {  // an LLM recipe: the llama.cpp type of each tensor
    os << "<p class=\"meta\" id=\"chosen\" data-trial=\"" << pick->number << "\">Trial "
       << pick->number
       << (chosen ? " (--trial)" : " (best " + html_escape(quality) + " on the front)");
    if (const auto q = metric_of(*pick, quality))
      os << ": " << html_escape(quality) << " " << num(*q, 5);
    os << ".</p>\n<table class=\"recipe-map\"><thead><tr><th>tensor</th><th>type</th></tr>"
       << "</thead><tbody>\n";
    const json& layers = pick->user_attrs.at("recipe").value("layers", json::object());
    for (const auto& [name, setting] : layers.items()) {
      const std::string type =
          setting.is_object() && setting.contains("type") && setting["type"].is_string()
              ? setting["type"].get<std::string>()
              : setting.dump();
      os << "<tr><td class=\"name\">" << html_escape(name) << "</td><td>" << html_escape(type)
         << "</td></tr>\n";
    }
    os << "</tbody></table>\n";
  } else {
    const auto recipe =
        compressors::recipe_from_json(pick->user_attrs.at("recipe"), "trial recipe");
    os << "<p class=\"meta\" id=\"chosen\" data-trial=\"" << pick->number << "\">Trial "
       << pick->number
       << (chosen ? " (--trial)" : " (best " + html_escape(quality) + " on the front)");
    if (const auto q = metric_of(*pick, quality))
      os << ": " << html_escape(quality) << " " << num(*q, 5);
    os << ". Bars: weight bits (blue, of 8) and pruned fraction (red).</p>\n";
    os << "<table class=\"recipe-map\"><thead><tr><th>layer</th><th>w_bits</th><th>granularity"
       << "</th><th>a_bits</th><th>prune</th><th>ratio</th><th>map</th></tr></thead><tbody>\n";
    auto row = [&](const std::string& name, const compressors::LayerSetting& s) {
      const double bits = std::min(s.w_bits, 8);
      const double ratio = s.prune.kind == compressors::PruneKind::kNone ? 0.0 : s.prune.ratio;
      os << "<tr><td class=\"name\">" << html_escape(name) << "</td><td>" << s.w_bits << "</td><td>"
         << html_escape(compressors::granularity_to_string(s.granularity)) << "</td><td>"
         << s.a_bits << "</td><td>" << html_escape(compressors::prune_kind_to_string(s.prune))
         << "</td><td>" << num(ratio, 3)
         << "</td><td><span class=\"bits\" style=\"width:" << bits * 10
         << "px\"></span> <span class=\"prune\" style=\"width:" << ratio * 80
         << "px\"></span></td></tr>\n";
    };
    for (const auto& [name, s] : recipe.layers) row(name, s);
    row("(default)", recipe.default_setting);
    os << "</tbody></table>\n";
  }
  os << "<script>" << kScript << "</script>\n</body>\n</html>\n";
  return os.str();
}

}  // namespace compsearch::experiments
