// open_storage: --storage values to storages (see open_storage.h).
#include "search/open_storage.h"

#include <cctype>
#include <stdexcept>

#include "search/journal_redis_backend.h"
#include "search/journal_storage.h"

namespace compsearch::search {

bool is_storage_url(const std::string& storage) {
  const size_t sep = storage.find("://");
  if (sep == std::string::npos || sep == 0) return false;
  for (size_t i = 0; i < sep; ++i) {
    const char c = storage[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return false;
  }
  return true;
}

std::shared_ptr<Storage> open_storage(const std::string& url_or_path) {
  if (url_or_path.rfind("redis://", 0) == 0) {
    return std::make_shared<JournalStorage>(
        make_journal_redis_backend(parse_redis_url(url_or_path)));
  }
  if (is_storage_url(url_or_path)) {
    const std::string scheme = url_or_path.substr(0, url_or_path.find("://"));
    throw std::invalid_argument("storage " + scheme + "://...: \"" + scheme +
                                "\" URLs are not supported; give a journal file path or "
                                "redis://[[username]:[password]@]host[:port][/db][?prefix=NAME]");
  }
  return std::make_shared<JournalStorage>(url_or_path);
}

}  // namespace compsearch::search
