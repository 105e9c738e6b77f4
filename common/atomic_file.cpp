// Atomic file replacement (see atomic_file.h).
#include "common/atomic_file.h"

#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

namespace compsearch {

void replace_file_atomically(const std::filesystem::path& out,
                             const std::function<void(const std::filesystem::path& tmp)>& write) {
  const std::filesystem::path dir =
      out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
  const std::filesystem::path tmp = dir / ("." + out.filename().string() + ".partial-" +
                                           std::to_string(static_cast<long long>(::getpid())));
  try {
    write(tmp);
    std::error_code ec;
    std::filesystem::rename(tmp, out, ec);
    if (ec) throw std::runtime_error(out.string() + ": cannot write (" + ec.message() + ")");
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

void write_file_atomically(const std::filesystem::path& out, std::string_view content) {
  replace_file_atomically(out, [&](const std::filesystem::path& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
    f.close();
    if (!f) throw std::runtime_error(out.string() + ": cannot write (disk full or no permission?)");
  });
}

}  // namespace compsearch
