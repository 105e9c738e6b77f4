// `compsearch report --storage S --study-name N [--out report.html] [--csv front.csv]
// [--trial K]`: the study's HTML report and/or its front as CSV (experiments/results.h).
#include <fstream>
#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "experiments/results.h"

namespace po = boost::program_options;

namespace compsearch::cli {
namespace {

void write_file(const std::string& path, const std::string& text) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
}

int run_report(const std::vector<std::string>& args) {
  VerbOptions o(
      "usage: compsearch report --storage S --study-name N [--out report.html] [--csv front.csv]\n"
      "                         [--trial K]\n\n"
      "Writes one self-contained HTML file (no external resources): a Pareto plot of accuracy\n"
      "against latency per target with the front highlighted, hypervolume against trials,\n"
      "subset (and proxy) against full accuracy, the front as a sortable table and the chosen\n"
      "recipe (the front's most accurate trial, or --trial K) as a per-layer map. --csv writes\n"
      "the front: number, objective values and every metric. Give --out, --csv or both.\n\n"
      "options");
  o.add()("storage", po::value<std::string>(), "the study's journal file or redis:// URL")(
      "study-name", po::value<std::string>(), "study name")(
      "out", po::value<std::string>(), "HTML report to write")("csv", po::value<std::string>(),
                                                               "CSV of the front to write")(
      "trial", po::value<int64_t>(), "the trial whose recipe the report shows");
  if (!o.parse(args)) return 0;
  const auto storage = o.required<std::string>("storage");
  const auto name = o.required<std::string>("study-name");
  const auto out = o.optional<std::string>("out");
  const auto csv = o.optional<std::string>("csv");
  if (!out && !csv) throw UsageError("give --out report.html, --csv front.csv or both");
  const auto study = experiments::load_study_results(storage, name);
  if (out) {
    write_file(*out, experiments::report_html(study, o.optional<int64_t>("trial")));
    std::cout << "report: " << *out << "\n";
  }
  if (csv) {
    write_file(*csv, experiments::front_csv(study));
    std::cout << "front: " << *csv << " (" << experiments::study_front(study).size()
              << " trials)\n";
  }
  return 0;
}

const CommandRegistration kRegistration("report", "HTML report and front CSV of a study",
                                        run_report);

}  // namespace
}  // namespace compsearch::cli
