// TrialCache (the samplers' incremental copy of a study's trials) and IntersectionSpace, on
// studies whose trials finish out of order.
#include "search/sampler_internal.h"

#include <doctest/doctest.h>

#include "search/random_sampler.h"
#include "tests/search/study_util.h"

using namespace compsearch::search;
using compsearch::search::testing::in_memory_study;
using compsearch::search::testing::ParamList;

namespace {
std::vector<int64_t> numbers(const std::vector<const FrozenTrial*>& trials) {
  std::vector<int64_t> out;
  for (const FrozenTrial* t : trials) out.push_back(t->number);
  return out;
}

const std::vector<StudyDirection> kMinimize{StudyDirection::kMinimize};

}  // namespace

TEST_CASE("TrialCache lists every trial in number order and each finished trial once") {
  auto study_ptr = in_memory_study(std::make_shared<RandomSampler>(1), kMinimize);
  Study& study = *study_ptr;
  const ParamList space{{"x", make_float(0, 1)}};
  for (int i = 0; i < 5; ++i) study.ask(space);
  study.tell(0, std::vector<double>{1.0}, TrialState::kComplete);
  study.tell(3, std::vector<double>{2.0}, TrialState::kComplete);
  internal::TrialCache cache;
  CHECK(numbers(cache.refresh(study)) == std::vector<int64_t>{0, 3});
  CHECK(numbers(cache.trials()) == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(cache.trials()[1]->state == TrialState::kRunning);
  // Trial 1 finishes, 5 starts: only 1 is new; the list keeps number order.
  study.tell(1, std::nullopt, TrialState::kFail);
  study.ask(space);
  CHECK(numbers(cache.refresh(study)) == std::vector<int64_t>{1});
  CHECK(numbers(cache.trials()) == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(cache.trials()[1]->state == TrialState::kFail);
  CHECK(cache.trials()[3]->values == std::vector<double>{2.0});
  study.tell(2, std::vector<double>{3.0}, TrialState::kComplete);
  study.tell(4, std::nullopt, TrialState::kPruned);
  CHECK(numbers(cache.refresh(study)) == std::vector<int64_t>{2, 4});
  CHECK(numbers(cache.refresh(study)).empty());
  CHECK(numbers(cache.trials()) == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(cache.trials()[5]->state == TrialState::kRunning);
  const uint64_t epoch = cache.epoch();
  // Another study: the cache starts over.
  auto other = in_memory_study(std::make_shared<RandomSampler>(1), kMinimize);
  other->ask(space);
  other->tell(0, std::vector<double>{5.0}, TrialState::kComplete);
  CHECK(numbers(cache.refresh(*other)) == std::vector<int64_t>{0});
  CHECK(cache.trials().size() == 1);
  CHECK(cache.trials()[0]->values == std::vector<double>{5.0});
  CHECK(cache.epoch() == epoch + 1);
}

TEST_CASE("IntersectionSpace keeps the parameters every complete trial shares, non-single") {
  // Parameter names must keep one distribution kind per study; b's int ranges differ, which a
  // study allows (an IntersectionSpace compares whole distributions).
  auto study = in_memory_study(std::make_shared<RandomSampler>(2), kMinimize);
  study->ask({{"a", make_float(0, 1)}, {"b", make_int(0, 3)}, {"k", make_float(2, 2)}});
  study->ask({{"a", make_float(0, 1)}, {"b", make_int(0, 4)}, {"k", make_float(2, 2)}});
  study->ask({{"z", make_float(0, 1)}});
  study->tell(0, std::vector<double>{1.0}, TrialState::kComplete);
  study->tell(1, std::vector<double>{1.0}, TrialState::kComplete);
  study->tell(2, std::nullopt, TrialState::kPruned);
  internal::TrialCache cache;
  internal::IntersectionSpace complete_only(false), with_pruned(true);
  const auto newly = cache.refresh(*study);
  complete_only.update(newly);
  with_pruned.update(newly);
  // b's distribution differs between trials 0 and 1; k is single-valued.
  const SearchSpace s = complete_only.non_single();
  REQUIRE(s.size() == 1);
  CHECK(s.count("a") == 1);
  // Pruned trial 2 has no "a": nothing is shared once it counts.
  CHECK(with_pruned.non_single().empty());
}
