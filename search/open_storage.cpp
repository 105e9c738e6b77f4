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

std::string storage_display(const std::string& storage) {
  if (!is_storage_url(storage)) return storage;
  if (storage.rfind("redis://", 0) == 0) {
    try {
      return parse_redis_url(storage).display;
    } catch (const std::invalid_argument&) {
    }
  }
  // Any other URL (or a malformed one): hide the whole user-info part.
  const size_t start = storage.find("://") + 3;
  const size_t at = storage.find('@', start);
  const size_t slash = storage.find('/', start);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return storage;
  return storage.substr(0, start) + "***" + storage.substr(at);
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
