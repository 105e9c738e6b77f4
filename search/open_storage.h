// The one place a --storage value (CLI flag, config key `storage`) becomes a Storage, so every
// verb accepts the same forms: a journal file path, or a redis:// URL (journal_redis_backend.h).
#pragma once

#include <memory>
#include <string>

#include "search/storage.h"

namespace compsearch::search {

// "redis://..." opens JournalStorage over Redis (connecting at once); any other "scheme://..."
// throws std::invalid_argument naming it and the accepted forms; anything else is the path of a
// journal file, created when absent. Connection errors throw std::runtime_error naming the URL
// (password hidden).
std::shared_ptr<Storage> open_storage(const std::string& url_or_path);

// `storage` as messages and reports show it: a URL's password replaced by "***".
std::string storage_display(const std::string& storage);

// Whether `storage` is a URL ("scheme://...") rather than a file path.
bool is_storage_url(const std::string& storage);

}  // namespace compsearch::search
