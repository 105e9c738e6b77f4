// TrialCache (the samplers' incremental copy of a study's trials) and IntersectionSpace, on
// studies whose trials finish out of order.
#include "search/sampler_internal.h"

#include <doctest/doctest.h>

#include "search/random_sampler.h"
#include "tests/search/mini_study.h"

using namespace compsearch::search;
using compsearch::search::testing::MiniStudy;
using compsearch::search::testing::ParamList;

namespace {
std::vector<int64_t> numbers(const std::vector<const FrozenTrial*>& trials) {
  std::vector<int64_t> out;
  for (const FrozenTrial* t : trials) out.push_back(t->number);
  return out;
}
}  // namespace

TEST_CASE("TrialCache lists every trial in number order and each finished trial once") {
  MiniStudy study({StudyDirection::kMinimize});
  RandomSampler random(1);
  const ParamList space{{"x", make_float(0, 1)}};
  for (int i = 0; i < 5; ++i) study.ask(random, space);
  study.tell(0, TrialState::kComplete, {1.0});
  study.tell(3, TrialState::kComplete, {2.0});
  internal::TrialCache cache;
  CHECK(numbers(cache.refresh(study)) == std::vector<int64_t>{0, 3});
  CHECK(numbers(cache.trials()) == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(cache.trials()[1]->state == TrialState::kRunning);
  // Trial 1 finishes, 5 starts: only 1 is new; the list keeps number order.
  study.tell(1, TrialState::kFail);
  study.ask(random, space);
  CHECK(numbers(cache.refresh(study)) == std::vector<int64_t>{1});
  CHECK(numbers(cache.trials()) == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(cache.trials()[1]->state == TrialState::kFail);
  CHECK(cache.trials()[3]->values == std::vector<double>{2.0});
  study.tell(2, TrialState::kComplete, {3.0});
  study.tell(4, TrialState::kPruned);
  CHECK(numbers(cache.refresh(study)) == std::vector<int64_t>{2, 4});
  CHECK(numbers(cache.refresh(study)).empty());
  CHECK(numbers(cache.trials()) == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(cache.trials()[5]->state == TrialState::kRunning);
  const uint64_t epoch = cache.epoch();
  // Another study: the cache starts over.
  MiniStudy other({StudyDirection::kMinimize});
  other.ask(random, space);
  other.tell(0, TrialState::kComplete, {5.0});
  CHECK(numbers(cache.refresh(other)) == std::vector<int64_t>{0});
  CHECK(cache.trials().size() == 1);
  CHECK(cache.trials()[0]->values == std::vector<double>{5.0});
  CHECK(cache.epoch() == epoch + 1);
}

TEST_CASE("IntersectionSpace keeps the parameters every complete trial shares, non-single") {
  MiniStudy study({StudyDirection::kMinimize});
  RandomSampler random(2);
  study.ask(random, {{"a", make_float(0, 1)}, {"b", make_int(0, 3)}, {"k", make_float(2, 2)}});
  study.ask(random, {{"a", make_float(0, 1)}, {"b", make_int(0, 4)}, {"k", make_float(2, 2)}});
  study.ask(random, {{"z", make_float(0, 1)}});
  study.tell(0, TrialState::kComplete, {1.0});
  study.tell(1, TrialState::kComplete, {1.0});
  study.tell(2, TrialState::kPruned);
  internal::TrialCache cache;
  internal::IntersectionSpace complete_only(false), with_pruned(true);
  const auto newly = cache.refresh(study);
  complete_only.update(newly);
  with_pruned.update(newly);
  // b's distribution differs between trials 0 and 1; k is single-valued.
  const SearchSpace s = complete_only.non_single();
  REQUIRE(s.size() == 1);
  CHECK(s.count("a") == 1);
  // Pruned trial 2 has no "a": nothing is shared once it counts.
  CHECK(with_pruned.non_single().empty());
}
