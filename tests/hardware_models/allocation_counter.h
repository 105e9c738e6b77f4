// Heap allocations counted by the replaced global operator new of this test binary
// (allocation_counter_test.cpp), so tests can check that a warm estimate allocates nothing.
#pragma once

namespace compsearch::hardware_models::testing {

// Calls of any global operator new (all forms) in this process so far.
long allocations_so_far();

}  // namespace compsearch::hardware_models::testing
