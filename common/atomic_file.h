// Writing a file so that readers (and a process killed half-way) never see it half-written: the
// content goes to a temporary file in the same folder, which is then renamed over the target
// (rename is atomic within one file system). The temporary file is removed on failure.
#pragma once

#include <filesystem>
#include <functional>
#include <string_view>

namespace compsearch {

// Calls `write(tmp)` to produce the temporary file, then renames it to `out`. Rethrows what
// `write` throws; throws std::runtime_error naming `out` when the rename fails.
void replace_file_atomically(const std::filesystem::path& out,
                             const std::function<void(const std::filesystem::path& tmp)>& write);

// replace_file_atomically with `content` as the file's bytes; throws std::runtime_error naming
// the file when it cannot be written.
void write_file_atomically(const std::filesystem::path& out, std::string_view content);

}  // namespace compsearch
