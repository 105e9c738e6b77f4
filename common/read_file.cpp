// read_all (see read_file.h).
#include "common/read_file.h"

#include <iterator>
#include <stdexcept>
#include <system_error>

namespace compsearch {

std::string read_all(std::ifstream& in, const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error(path.string() + ": is a directory; expected a file");
  try {
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::ios_base::failure& e) {
    throw std::runtime_error(path.string() + ": cannot read: " + e.what());
  }
}

}  // namespace compsearch
