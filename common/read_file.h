// Reading a whole input file with errors that name it. std::ifstream opens a directory and then
// throws, on the first read, "basic_filebuf::underflow error reading the file: Is a directory",
// which names no file; read_all says which path failed and what was expected.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

namespace compsearch {

// The rest of `in`, opened from `path`. Throws std::runtime_error "<path>: is a directory;
// expected a file" or "<path>: cannot read: <reason>".
std::string read_all(std::ifstream& in, const std::filesystem::path& path);

}  // namespace compsearch
