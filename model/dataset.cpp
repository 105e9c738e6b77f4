// IDX and NPY readers, dataset specs and preprocessing.
#include "model/dataset.h"

#include <zlib.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/read_file.h"

namespace compsearch::model {

namespace {

std::string read_gzip_or_plain(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw std::runtime_error(path.string() + ": no such file");
  gzFile f = gzopen(path.c_str(), "rb");  // zlib reads uncompressed files transparently
  if (!f) throw std::runtime_error(path.string() + ": cannot open");
  std::string data;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  const std::string message = msg ? msg : "";
  gzclose(f);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
    throw std::runtime_error(path.string() + ": gzip data is corrupt or truncated (" + message +
                             ")");
  }
  return data;
}

uint32_t big_endian_u32(const std::string& d, size_t off) {
  return (uint32_t(uint8_t(d[off])) << 24) | (uint32_t(uint8_t(d[off + 1])) << 16) |
         (uint32_t(uint8_t(d[off + 2])) << 8) | uint32_t(uint8_t(d[off + 3]));
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

int64_t Dataset::size() const {
  const int64_t per = shape_numel(sample_shape);
  return per ? static_cast<int64_t>(images.size()) / per : 0;
}

Tensor Dataset::batch(int64_t begin, int64_t count) const {
  const int64_t per = shape_numel(sample_shape);
  if (begin < 0 || count < 0 || begin + count > size()) {
    throw std::out_of_range(name + ": batch [" + std::to_string(begin) + ", " +
                            std::to_string(begin + count) + ") is outside the " +
                            std::to_string(size()) + " samples");
  }
  Tensor t;
  t.shape = {count};
  t.shape.insert(t.shape.end(), sample_shape.begin(), sample_shape.end());
  t.f32.assign(images.begin() + begin * per, images.begin() + (begin + count) * per);
  return t;
}

Tensor read_idx(const std::filesystem::path& path) {
  const std::string d = read_gzip_or_plain(path);
  if (d.size() < 4)
    throw std::runtime_error(path.string() + ": too short for an IDX file (" +
                             std::to_string(d.size()) + " bytes)");
  const uint32_t magic = big_endian_u32(d, 0);
  const uint32_t type = (magic >> 8) & 0xff, ndim = magic & 0xff;
  if ((magic >> 16) != 0 || type != 0x08 || ndim < 1 || ndim > 4) {
    throw std::runtime_error(path.string() + ": wrong IDX magic number " + hex32(magic) +
                             " (expected 0x00000801 for labels or 0x00000803 for images: "
                             "unsigned bytes, 1 to 4 dimensions)");
  }
  if (d.size() < 4 + 4 * ndim) throw std::runtime_error(path.string() + ": IDX header truncated");
  Tensor t;
  t.dtype = DType::kUInt8;
  for (uint32_t i = 0; i < ndim; ++i) t.shape.push_back(big_endian_u32(d, 4 + 4 * i));
  const size_t header = 4 + 4 * ndim;
  const int64_t n = checked_numel(t.shape, path.string() + ": IDX header");
  if (static_cast<int64_t>(d.size() - header) != n) {
    throw std::runtime_error(path.string() + ": IDX header declares " + shape_to_string(t.shape) +
                             " = " + std::to_string(n) + " bytes of data but the file has " +
                             std::to_string(d.size() - header) + " (truncated or corrupt)");
  }
  t.i64.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t.i64[i] = static_cast<uint8_t>(d[header + i]);
  return t;
}

Tensor read_npy(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open");
  std::string d = read_all(in, path);
  if (d.size() < 10 || d.compare(0, 6, "\x93NUMPY") != 0) {
    throw std::runtime_error(path.string() + ": not an NPY file (missing the \\x93NUMPY magic)");
  }
  const int major = static_cast<uint8_t>(d[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = uint8_t(d[8]) | (size_t(uint8_t(d[9])) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (d.size() < 12) throw std::runtime_error(path.string() + ": NPY header truncated");
    header_len = uint8_t(d[8]) | (size_t(uint8_t(d[9])) << 8) | (size_t(uint8_t(d[10])) << 16) |
                 (size_t(uint8_t(d[11])) << 24);
    offset = 12;
  } else {
    throw std::runtime_error(path.string() + ": NPY version " + std::to_string(major) +
                             " is not supported (1, 2 or 3)");
  }
  if (d.size() < offset + header_len)
    throw std::runtime_error(path.string() + ": NPY header truncated");
  const std::string header = d.substr(offset, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'"))) {
    throw std::runtime_error(path.string() + ": NPY header has no 'descr': " + header);
  }
  const std::string descr = m[1];
  if (std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*True"))) {
    throw std::runtime_error(path.string() +
                             ": Fortran-order NPY arrays are not supported (save with C order)");
  }
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)"))) {
    throw std::runtime_error(path.string() + ": NPY header has no 'shape': " + header);
  }
  Tensor t;
  std::stringstream dims(m[1].str());
  std::string item;
  while (std::getline(dims, item, ',')) {
    const size_t b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
    if (b == std::string::npos) continue;
    const std::string dim = item.substr(b, e - b + 1);
    int64_t v = -1;
    const auto [end, ec] = std::from_chars(dim.data(), dim.data() + dim.size(), v);
    if (ec != std::errc() || end != dim.data() + dim.size() || v < 0) {
      throw std::runtime_error(path.string() + ": NPY shape dimension '" + dim +
                               "' is not an integer from 0 to " +
                               std::to_string(std::numeric_limits<int64_t>::max()));
    }
    t.shape.push_back(v);
  }
  size_t esize;
  if (descr == "<f4" || descr == "=f4") {
    t.dtype = DType::kFloat32;
    esize = 4;
  } else if (descr == "|u1" || descr == "<u1") {
    t.dtype = DType::kUInt8;
    esize = 1;
  } else if (descr == "<i8" || descr == "=i8") {
    t.dtype = DType::kInt64;
    esize = 8;
  } else if (descr == "<i4" || descr == "=i4") {
    t.dtype = DType::kInt32;
    esize = 4;
  } else {
    throw std::runtime_error(path.string() + ": NPY dtype '" + descr +
                             "' is not supported (float32 '<f4' or uint8 '|u1' for images; "
                             "int64, int32 or uint8 for labels)");
  }
  const int64_t n = checked_numel(t.shape, path.string() + ": NPY shape");
  if (static_cast<uint64_t>(n) > std::numeric_limits<size_t>::max() / esize) {
    throw std::runtime_error(path.string() + ": NPY shape " + shape_to_string(t.shape) +
                             " needs more data bytes than memory can address");
  }
  const size_t start = offset + header_len;
  if (d.size() - start != static_cast<size_t>(n) * esize) {
    throw std::runtime_error(path.string() + ": NPY shape " + shape_to_string(t.shape) + " needs " +
                             std::to_string(n * esize) + " data bytes, the file has " +
                             std::to_string(d.size() - start) + " (truncated or corrupt)");
  }
  const char* p = d.data() + start;
  if (t.dtype == DType::kFloat32) {
    t.f32.resize(n);
    std::memcpy(t.f32.data(), p, n * 4);
  } else {
    t.i64.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      if (t.dtype == DType::kUInt8)
        t.i64[i] = static_cast<uint8_t>(p[i]);
      else if (t.dtype == DType::kInt32) {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        t.i64[i] = v;
      } else {
        int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        t.i64[i] = v;
      }
    }
  }
  return t;
}

void write_npy(const Tensor& tensor, const std::filesystem::path& path) {
  std::string shape;
  for (int64_t dim : tensor.shape) shape += std::to_string(dim) + ", ";
  if (tensor.shape.size() > 1)
    shape.erase(shape.size() - 2);
  else if (tensor.shape.size() == 1)
    shape.pop_back();
  std::string header = std::string("{'descr': '") + (tensor.is_float() ? "<f4" : "<i8") +
                       "', 'fortran_order': False, 'shape': (" + shape + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path.string() + ": cannot open for writing");
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  if (tensor.is_float()) {
    out.write(reinterpret_cast<const char*>(tensor.f32.data()),
              static_cast<std::streamsize>(tensor.f32.size() * 4));
  } else {
    out.write(reinterpret_cast<const char*>(tensor.i64.data()),
              static_cast<std::streamsize>(tensor.i64.size() * 8));
  }
}

std::filesystem::path fashion_mnist_dir() {
  if (const char* env = std::getenv("COMPSEARCH_FASHION_MNIST_DIR"); env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

DatasetSpec dataset_spec_from_json(const nlohmann::json& j, const std::string& source,
                                   const std::filesystem::path& base_dir) {
  if (!j.is_object())
    throw std::invalid_argument(source + ": a dataset spec must be a JSON object");
  static const std::set<std::string> keys = {"format", "images", "labels", "scale", "mean",
                                             "std",    "shape",  "layout", "limit"};
  DatasetSpec s;
  s.source = source;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!keys.count(it.key())) {
      throw std::invalid_argument(source + ": unknown key '" + it.key() +
                                  "' (allowed: format, images, labels, scale, mean, std, shape, "
                                  "layout, limit)");
    }
  }
  auto path_of = [&](const char* key) -> std::filesystem::path {
    if (!j[key].is_string())
      throw std::invalid_argument(source + ": '" + key + "' must be a file path string");
    std::filesystem::path p = j[key].get<std::string>();
    return p.is_absolute() ? p : base_dir / p;
  };
  auto numbers = [&](const char* key) {
    std::vector<double> v;
    const auto& a = j[key];
    if (a.is_number()) return std::vector<double>{a.get<double>()};
    if (!a.is_array())
      throw std::invalid_argument(source + ": '" + key +
                                  "' must be a number or an array of numbers");
    for (const auto& x : a) {
      if (!x.is_number())
        throw std::invalid_argument(source + ": '" + key + "' has a non-number entry " + x.dump());
      v.push_back(x.get<double>());
    }
    return v;
  };
  if (!j.contains("format") || !j["format"].is_string() ||
      (j["format"] != "idx" && j["format"] != "npy")) {
    throw std::invalid_argument(
        source + ": 'format' must be \"idx\" or \"npy\", got " +
        (j.contains("format") ? j["format"].dump() : std::string("nothing")));
  }
  s.format = j["format"];
  if (!j.contains("images"))
    throw std::invalid_argument(source + ": missing required key 'images'");
  s.images = path_of("images");
  if (j.contains("labels"))
    s.labels = path_of("labels");
  else if (s.format == "idx")
    throw std::invalid_argument(source + ": format \"idx\" needs 'labels'");
  if (j.contains("scale")) {
    if (!j["scale"].is_number() || j["scale"].get<double>() <= 0) {
      throw std::invalid_argument(source + ": 'scale' must be a positive number, got " +
                                  j["scale"].dump());
    }
    s.preprocessing.scale = j["scale"].get<double>();
  }
  if (j.contains("mean")) s.preprocessing.mean = numbers("mean");
  if (j.contains("std")) {
    s.preprocessing.std = numbers("std");
    for (double v : s.preprocessing.std) {
      if (v <= 0)
        throw std::invalid_argument(source + ": 'std' entries must be positive, got " +
                                    std::to_string(v));
    }
  }
  if (j.contains("shape")) {
    if (!j["shape"].is_array())
      throw std::invalid_argument(source + ": 'shape' must be an array of positive integers");
    for (const auto& x : j["shape"]) {
      if (!x.is_number_integer() || x.get<int64_t>() <= 0) {
        throw std::invalid_argument(source + ": 'shape' must hold positive integers, got " +
                                    j["shape"].dump());
      }
      s.sample_shape.push_back(x.get<int64_t>());
    }
  }
  if (j.contains("layout")) {
    if (j["layout"] != "nchw" && j["layout"] != "nhwc") {
      throw std::invalid_argument(source + ": 'layout' must be \"nchw\" or \"nhwc\", got " +
                                  j["layout"].dump());
    }
    s.layout = j["layout"];
  }
  if (j.contains("limit")) {
    if (!j["limit"].is_number_integer() || j["limit"].get<int64_t>() <= 0) {
      throw std::invalid_argument(source + ": 'limit' must be a positive integer, got " +
                                  j["limit"].dump());
    }
    s.limit = j["limit"].get<int64_t>();
  }
  return s;
}

Dataset load_dataset(const DatasetSpec& spec) {
  Tensor raw = spec.format == "idx" ? read_idx(spec.images) : read_npy(spec.images);
  const std::string what = spec.images.string();
  if (raw.shape.size() < 2) {
    throw std::runtime_error(what +
                             ": images must have a sample dimension and at least one more, got " +
                             shape_to_string(raw.shape));
  }
  int64_t n = raw.shape[0];
  Shape sample(raw.shape.begin() + 1, raw.shape.end());
  if (spec.layout == "nhwc") {
    if (sample.size() != 3)
      throw std::runtime_error(what + ": layout nhwc needs [N, H, W, C] images, got " +
                               shape_to_string(raw.shape));
    sample = {sample[2], sample[0], sample[1]};
  } else if (spec.format == "idx" && sample.size() == 2) {
    sample.insert(sample.begin(), 1);  // [N, H, W] grey images -> one channel
  }
  if (!spec.sample_shape.empty()) {
    if (shape_numel(spec.sample_shape) != shape_numel(sample)) {
      throw std::invalid_argument(
          spec.source + ": 'shape' " + shape_to_string(spec.sample_shape) + " has " +
          std::to_string(shape_numel(spec.sample_shape)) + " elements but each sample of " + what +
          " has " + std::to_string(shape_numel(sample)) + " " + shape_to_string(sample));
    }
    sample = spec.sample_shape;
  }
  Dataset ds;
  ds.name = what;
  ds.sample_shape = sample;
  if (!spec.labels.empty()) {
    Tensor lab = spec.format == "idx" ? read_idx(spec.labels) : read_npy(spec.labels);
    if (lab.is_float())
      throw std::runtime_error(spec.labels.string() + ": labels must be integers, got float32");
    if (lab.shape.size() != 1)
      throw std::runtime_error(spec.labels.string() + ": labels must be 1-D, got " +
                               shape_to_string(lab.shape));
    if (lab.shape[0] != n) {
      throw std::runtime_error(spec.labels.string() + ": " + std::to_string(lab.shape[0]) +
                               " labels but " + what + " has " + std::to_string(n) +
                               " images (the counts must match)");
    }
    for (int64_t i = 0; i < n; ++i) {
      if (lab.i64[i] < 0)
        throw std::runtime_error(spec.labels.string() + ": label #" + std::to_string(i) +
                                 " is negative (" + std::to_string(lab.i64[i]) + ")");
    }
    ds.labels = std::move(lab.i64);
  }
  if (spec.limit > 0 && spec.limit < n) {
    n = spec.limit;
    if (!ds.labels.empty()) ds.labels.resize(n);
  }
  const int64_t per = shape_numel(sample);
  const int64_t channels = sample.empty() ? 1 : sample[0];
  const int64_t plane = channels ? per / channels : 0;
  const auto& pp = spec.preprocessing;
  const double scale = pp.scale.value_or(raw.is_float() ? 1.0 : 1.0 / 255.0);
  auto per_channel = [&](const std::vector<double>& v, const char* key, double fallback) {
    if (v.empty()) return std::vector<double>(channels, fallback);
    if (v.size() == 1) return std::vector<double>(channels, v[0]);
    if (static_cast<int64_t>(v.size()) != channels) {
      throw std::invalid_argument(spec.source + ": '" + key + "' has " + std::to_string(v.size()) +
                                  " values but the samples have " + std::to_string(channels) +
                                  " channels (shape " + shape_to_string(sample) + ")");
    }
    return v;
  };
  const auto mean = per_channel(pp.mean, "mean", 0.0), stdv = per_channel(pp.std, "std", 1.0);
  const bool identity =
      mean == std::vector<double>(channels, 0.0) && stdv == std::vector<double>(channels, 1.0);
  const float fscale = static_cast<float>(scale);
  ds.images.resize(static_cast<size_t>(n * per));
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t c = 0; c < channels; ++c) {
      const float m = static_cast<float>(mean[c]), sd = static_cast<float>(stdv[c]);
      for (int64_t k = 0; k < plane; ++k) {
        // nhwc: element (h, w, c) of the stored sample lands at (c, h, w).
        const int64_t src =
            spec.layout == "nhwc" ? s * per + k * channels + c : s * per + c * plane + k;
        const float v = raw.is_float() ? raw.f32[src] : static_cast<float>(raw.i64[src]);
        // Division by 255 (not multiplication by its inverse) matches PyTorch's `x / 255` exactly.
        float x = (!pp.scale && !raw.is_float()) ? v / 255.0f : v * fscale;
        if (!identity) x = (x - m) / sd;
        ds.images[s * per + c * plane + k] = x;
      }
    }
  }
  return ds;
}

Dataset load_dataset(const std::string& name_or_path, const std::string& split) {
  if (name_or_path == "fashion-mnist") {
    if (split != "train" && split != "test") {
      throw std::invalid_argument("--split must be \"train\" or \"test\", got \"" + split + "\"");
    }
    const auto dir = fashion_mnist_dir();
    const std::string prefix = split == "train" ? "train" : "t10k";
    DatasetSpec spec;
    spec.format = "idx";
    spec.images = dir / (prefix + "-images-idx3-ubyte.gz");
    spec.labels = dir / (prefix + "-labels-idx1-ubyte.gz");
    spec.source = "fashion-mnist";
    if (!std::filesystem::exists(spec.images)) {
      throw std::runtime_error("fashion-mnist: " + spec.images.string() +
                               " not found (install Debian's dataset-fashion-mnist with "
                               "scripts/setup.sh, or set COMPSEARCH_FASHION_MNIST_DIR)");
    }
    Dataset ds = load_dataset(spec);
    ds.name = "fashion-mnist/" + split;
    return ds;
  }
  const std::filesystem::path path = name_or_path;
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error("--data '" + name_or_path +
                             "': neither the built-in name 'fashion-mnist' nor an existing "
                             "dataset JSON file");
  }
  std::ifstream in(path);
  const std::string text = read_all(in, path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(path.string() + ": not valid JSON (" + e.what() + ")");
  }
  return load_dataset(dataset_spec_from_json(j, path.string(), path.parent_path()));
}

void check_dataset_matches_model(const Dataset& data, const Graph& graph) {
  if (graph.inputs.empty()) throw std::invalid_argument("the model has no inputs");
  const ValueInfo& in = graph.inputs[0];
  bool ok = in.shape.size() == data.sample_shape.size() + 1;
  for (size_t d = 1; ok && d < in.shape.size(); ++d) {
    ok = in.shape[d] < 0 || in.shape[d] == data.sample_shape[d - 1];
  }
  if (!ok) {
    throw std::invalid_argument("dataset " + data.name + " has samples of shape " +
                                shape_to_string(data.sample_shape) + " but model input '" +
                                in.name + "' expects " + shape_to_string(in.shape) +
                                " (first dim = batch); set \"shape\" in a dataset JSON to "
                                "reshape samples");
  }
}

}  // namespace compsearch::model
