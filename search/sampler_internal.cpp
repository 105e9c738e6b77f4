// Seed derivation, TrialCache and IntersectionSpace (see sampler_internal.h).
#include "search/sampler_internal.h"

#include <algorithm>
#include <random>

namespace compsearch::search::internal {

namespace {
// Odd 64-bit constants that spread the second word over all bits before it is mixed in: the
// golden-ratio increment of SplitMix64 and another arbitrary odd one.
constexpr uint64_t kMixMultiplier = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t kMixOffset = 0x632be59bd9b4e019ULL;
}  // namespace

uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t state = a;
  uint64_t mixed = splitmix64(state) ^ (b * kMixMultiplier + kMixOffset);
  return splitmix64(mixed);
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) { return mix_seed(mix_seed(a, b), c); }

uint64_t hash_name(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64-bit offset basis and prime (Fowler, Noll, Vo)
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t entropy_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

std::vector<const FrozenTrial*> TrialCache::refresh(const StudyView& study) {
  if (study_ != &study) {
    study_ = &study;
    finished_.clear();
    unfinished_.clear();
    cursor_ = 0;
    all_.clear();
    ++epoch_;
  }
  std::vector<FrozenTrial> fresh = study.get_trials_from(cursor_);
  std::vector<const FrozenTrial*> newly;
  unfinished_.clear();
  for (FrozenTrial& t : fresh) {
    if (is_finished(t.state)) {
      auto [it, inserted] = finished_.emplace(t.number, std::move(t));
      if (inserted) newly.push_back(&it->second);
    } else {
      unfinished_.push_back(std::move(t));
    }
  }
  // all_ holds the finished prefix (numbers below cursor_) first: it never changes, so only the
  // tail from the old cursor on is rebuilt (O(new trials), not O(study size), per refresh).
  const int64_t old_cursor = cursor_;
  all_.resize(static_cast<size_t>(std::min<int64_t>(old_cursor, all_.size())));
  for (auto f = finished_.find(cursor_); f != finished_.end() && f->first == cursor_; ++f) {
    ++cursor_;
  }
  auto f = finished_.lower_bound(old_cursor);
  auto u = unfinished_.begin();
  while (f != finished_.end() || u != unfinished_.end()) {
    if (u == unfinished_.end() || (f != finished_.end() && f->first < u->number)) {
      all_.push_back(&f->second);
      ++f;
    } else {
      all_.push_back(&*u);
      ++u;
    }
  }
  return newly;
}

void IntersectionSpace::update(const std::vector<const FrozenTrial*>& newly_finished) {
  for (const FrozenTrial* t : newly_finished) {
    if (t->state != TrialState::kComplete &&
        !(include_pruned_ && t->state == TrialState::kPruned)) {
      continue;
    }
    if (!space_) {
      space_ = SearchSpace(t->distributions.begin(), t->distributions.end());
      non_single_.reset();
      continue;
    }
    // Both maps are sorted by name: one merge pass instead of a lookup per parameter.
    auto d = t->distributions.begin();
    for (auto it = space_->begin(); it != space_->end();) {
      while (d != t->distributions.end() && d->first < it->first) ++d;
      if (d == t->distributions.end() || d->first != it->first || !(d->second == it->second)) {
        it = space_->erase(it);
        non_single_.reset();
      } else {
        ++it;
      }
    }
  }
}

SearchSpace IntersectionSpace::non_single() const {
  if (!space_) return {};
  if (!non_single_) {
    SearchSpace out;
    for (const auto& [name, d] : *space_) {
      if (!is_single(d)) out.emplace_hint(out.end(), name, d);
    }
    non_single_ = std::move(out);
  }
  return *non_single_;
}

}  // namespace compsearch::search::internal
