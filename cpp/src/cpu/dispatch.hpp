// Internal: the CPU ISA selection, as the runtime API and the benchmark helpers see it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace normkit::cpu {

const char* current_isa_name();
void set_isa(const std::string& name);
std::vector<std::string> isa_names(bool runnable_only);
// Memory copy with the kernels' threads and (optionally) streaming stores: the benchmark's
// bandwidth roof.
void bench_copy(const void* src, void* dst, int64_t bytes, bool nontemporal);

}  // namespace normkit::cpu
