// Datasets: Fashion-MNIST IDX, NPY, JSON specs, preprocessing and their error messages.
#include "model/dataset.h"

#include <doctest/doctest.h>

#include <fstream>

#include "model/graph.h"
#include "tests/model/test_util.h"

using namespace compsearch::model;
using compsearch::model::testing::source_dir;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  const fs::path d = fs::temp_directory_path() / "compsearch_model_dataset_test";
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// An uncompressed IDX file (zlib reads plain files transparently, as the reader allows).
std::string idx(uint32_t magic, std::vector<uint32_t> dims, std::string data) {
  std::string s = be32(magic);
  for (auto d : dims) s += be32(d);
  return s + data;
}

std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data,
                      bool fortran = false) {
  std::string header = "{'descr': '" + descr +
                       "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': (" +
                       shape + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string s = "\x93NUMPY\x01";
  s += '\0';
  s += char(header.size() & 0xff);
  s += char(header.size() >> 8);
  return s + header + data;
}

}  // namespace

TEST_CASE("fashion-mnist test split has 10000 images in [0 1] and 1000 of each label") {
  const Dataset d = load_dataset("fashion-mnist", "test");
  CHECK(d.size() == 10000);
  CHECK(d.sample_shape == Shape{1, 28, 28});
  CHECK(d.name == "fashion-mnist/test");
  std::vector<int> counts(10, 0);
  for (int64_t l : d.labels) counts.at(l)++;
  for (int c : counts) CHECK(c == 1000);
  // First test image (an ankle boot, label 9): pixel (14, 14) is 110 / 255, the sum is 33456 / 255.
  CHECK(d.labels[0] == 9);
  CHECK(d.images[14 * 28 + 14] == 110.0f / 255.0f);
  double sum = 0;
  for (int i = 0; i < 784; ++i) sum += d.images[i];
  CHECK(sum == doctest::Approx(33456.0 / 255.0).epsilon(1e-6));
  const Tensor b = d.batch(2, 3);
  CHECK(b.shape == Shape{3, 1, 28, 28});
  CHECK(b.f32[0] == d.images[2 * 784]);
  CHECK_THROWS_AS(d.batch(9999, 2), std::out_of_range);
}

TEST_CASE("fashion-mnist train split has 60000 images and a bad split is named") {
  CHECK(load_dataset("fashion-mnist", "train").size() == 60000);
  CHECK_THROWS_WITH_AS(load_dataset("fashion-mnist", "valid"),
                       "--split must be \"train\" or \"test\", got \"valid\"",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      load_dataset("no-such-data", "test"),
      doctest::Contains(
          "neither the built-in name 'fashion-mnist' nor an existing dataset JSON file"),
      std::runtime_error);
}

TEST_CASE("IDX errors name a wrong magic and truncated data and an image/label count mismatch") {
  const fs::path dir = temp_dir();
  write_bytes(dir / "bad_magic.idx", idx(0x00000d03, {2, 2, 2}, std::string(8, '\1')));
  CHECK_THROWS_WITH_AS(read_idx(dir / "bad_magic.idx"),
                       doctest::Contains("wrong IDX magic number 0x00000d03 (expected 0x00000801 "
                                         "for labels or 0x00000803 for images"),
                       std::runtime_error);
  write_bytes(dir / "short.idx", idx(0x00000803, {2, 2, 2}, std::string(7, '\1')));
  CHECK_THROWS_WITH_AS(read_idx(dir / "short.idx"),
                       doctest::Contains("declares [2, 2, 2] = 8 bytes of data but the file has 7"),
                       std::runtime_error);
  write_bytes(dir / "images.idx", idx(0x00000803, {3, 2, 2}, std::string(12, '\x10')));
  write_bytes(dir / "labels.idx", idx(0x00000801, {2}, std::string("\1\2", 2)));
  write_bytes(dir / "spec.json",
              R"({"format": "idx", "images": "images.idx", "labels": "labels.idx"})");
  const std::string mismatch =
      "2 labels but " + (dir / "images.idx").string() + " has 3 images (the counts must match)";
  CHECK_THROWS_WITH_AS(load_dataset((dir / "spec.json").string()),
                       doctest::Contains(mismatch.c_str()), std::runtime_error);
  write_bytes(dir / "labels.idx", idx(0x00000801, {3}, std::string("\1\2\3", 3)));
  const Dataset d = load_dataset((dir / "spec.json").string());
  CHECK(d.sample_shape == Shape{1, 2, 2});
  CHECK(d.images[0] == 16.0f / 255.0f);
  CHECK(d.labels == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("NPY float32 round trip and uint8 reading") {
  const fs::path dir = temp_dir();
  const Tensor t = Tensor::floats({2, 3}, {1.5f, -2.0f, 0.0f, 3.25f, 1e-7f, 42.0f});
  write_npy(t, dir / "f.npy");
  const Tensor r = read_npy(dir / "f.npy");
  CHECK(r.dtype == DType::kFloat32);
  CHECK(r.shape == t.shape);
  CHECK(r.f32 == t.f32);
  write_bytes(dir / "u.npy", npy_bytes("|u1", "2, 2", std::string("\x00\x01\xff\x80", 4)));
  const Tensor u = read_npy(dir / "u.npy");
  CHECK(u.dtype == DType::kUInt8);
  CHECK(u.i64 == std::vector<int64_t>{0, 1, 255, 128});
}

TEST_CASE("NPY errors name the file and the problem") {
  const fs::path dir = temp_dir();
  write_bytes(dir / "f8.npy", npy_bytes("<f8", "1,", std::string(8, '\0')));
  CHECK_THROWS_WITH_AS(read_npy(dir / "f8.npy"),
                       doctest::Contains("NPY dtype '<f8' is not supported"), std::runtime_error);
  write_bytes(dir / "fortran.npy", npy_bytes("<f4", "1, 1", std::string(4, '\0'), true));
  CHECK_THROWS_WITH_AS(read_npy(dir / "fortran.npy"), doctest::Contains("Fortran-order"),
                       std::runtime_error);
  write_bytes(dir / "short.npy", npy_bytes("<f4", "2, 2", std::string(12, '\0')));
  CHECK_THROWS_WITH_AS(read_npy(dir / "short.npy"),
                       doctest::Contains("needs 16 data bytes, the file has 12"),
                       std::runtime_error);
  write_bytes(dir / "junk.npy", "hello");
  CHECK_THROWS_WITH_AS(read_npy(dir / "junk.npy"), doctest::Contains("not an NPY file"),
                       std::runtime_error);
  // A directory: std::ifstream opens it, then its read threw "basic_filebuf::underflow error
  // reading the file: Is a directory", which named no file.
  fs::create_directories(dir / "adir.npy");
  CHECK_THROWS_WITH_AS(read_npy(dir / "adir.npy"),
                       ((dir / "adir.npy").string() + ": is a directory; expected a file").c_str(),
                       std::runtime_error);
  fs::create_directories(dir / "spec_dir.json");
  CHECK_THROWS_WITH_AS(
      load_dataset((dir / "spec_dir.json").string()),
      ((dir / "spec_dir.json").string() + ": is a directory; expected a file").c_str(),
      std::runtime_error);
}

TEST_CASE(
    "NPY and IDX shapes that overflow or are negative or do not parse are errors naming the file") {
  const fs::path dir = temp_dir();
  // 2^32 x 2^32 elements wrap to 0 in int64: the empty data would then "match".
  write_bytes(dir / "wrap.npy", npy_bytes("<f4", "4294967296, 4294967296", ""));
  CHECK_THROWS_WITH_AS(read_npy(dir / "wrap.npy"),
                       doctest::Contains(((dir / "wrap.npy").string() +
                                          ": NPY shape: shape [4294967296, 4294967296] has more "
                                          "elements than a 64-bit count holds")
                                             .c_str()),
                       std::runtime_error);
  // 2^62 elements fit int64, their 2^64 bytes do not fit size_t.
  write_bytes(dir / "bytes.npy", npy_bytes("<f4", "4611686018427387904,", ""));
  CHECK_THROWS_WITH_AS(read_npy(dir / "bytes.npy"), doctest::Contains("bytes.npy: NPY shape"),
                       std::runtime_error);
  write_bytes(dir / "huge.npy", npy_bytes("<f4", "99999999999999999999, 2", ""));
  CHECK_THROWS_WITH_AS(read_npy(dir / "huge.npy"),
                       doctest::Contains("huge.npy: NPY shape dimension '99999999999999999999' is "
                                         "not an integer from 0 to 9223372036854775807"),
                       std::runtime_error);
  write_bytes(dir / "neg.npy", npy_bytes("<f4", "-3, 2", ""));
  CHECK_THROWS_WITH_AS(read_npy(dir / "neg.npy"),
                       doctest::Contains("neg.npy: NPY shape dimension '-3'"), std::runtime_error);
  write_bytes(dir / "word.npy", npy_bytes("<f4", "2, x", std::string(8, '\0')));
  CHECK_THROWS_WITH_AS(read_npy(dir / "word.npy"),
                       doctest::Contains("word.npy: NPY shape dimension 'x'"), std::runtime_error);
  // The dataset loader passes the error on (it used to crash on the wrapped shape).
  const nlohmann::json spec = {{"format", "npy"}, {"images", "wrap.npy"}};
  CHECK_THROWS_WITH_AS(load_dataset(dataset_spec_from_json(spec, "d.json", dir)),
                       doctest::Contains("wrap.npy"), std::runtime_error);
  // IDX: four dims of 2^16 = 2^64 elements.
  write_bytes(dir / "wrap.idx", idx(0x00000804, {65536, 65536, 65536, 65536}, ""));
  CHECK_THROWS_WITH_AS(read_idx(dir / "wrap.idx"),
                       doctest::Contains("wrap.idx: IDX header: shape [65536, 65536, 65536, 65536] "
                                         "has more elements"),
                       std::runtime_error);
}

TEST_CASE("Dataset specs apply scale and per-channel mean/std and the NHWC layout") {
  const fs::path dir = temp_dir();
  // One sample, 2x1 pixels, 2 channels stored NHWC: (h0: c0=10, c1=20), (h1: c0=30, c1=40).
  write_npy(Tensor::floats({1, 2, 1, 2}, {10, 20, 30, 40}), dir / "x.npy");
  write_npy(Tensor::ints({1}, {4}), dir / "y.npy");
  write_bytes(dir / "spec.json",
              R"({"format": "npy", "images": "x.npy", "labels": "y.npy", "layout": "nhwc",
                                     "scale": 0.1, "mean": [1, 2], "std": [2, 4]})");
  const Dataset d = load_dataset((dir / "spec.json").string());
  CHECK(d.sample_shape == Shape{2, 2, 1});
  // channel 0: (1 - 1) / 2, (3 - 1) / 2; channel 1: (2 - 2) / 4, (4 - 2) / 4.
  CHECK(d.images == std::vector<float>{0.0f, 1.0f, 0.0f, 0.5f});
  CHECK(d.labels == std::vector<int64_t>{4});
}

TEST_CASE("Dataset spec errors name the file and the key and what is allowed") {
  const fs::path dir = temp_dir();
  const nlohmann::json base = {{"format", "npy"}, {"images", "x.npy"}};
  auto with = [&](const char* key, nlohmann::json v) {
    auto j = base;
    j[key] = v;
    return j;
  };
  CHECK_THROWS_WITH_AS(dataset_spec_from_json(with("colour", true), "d.json", dir),
                       doctest::Contains("d.json: unknown key 'colour'"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(dataset_spec_from_json(with("format", "csv"), "d.json", dir),
                       "d.json: 'format' must be \"idx\" or \"npy\", got \"csv\"",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      dataset_spec_from_json(with("std", nlohmann::json::array({1, 0})), "d.json", dir),
      doctest::Contains("'std' entries must be positive"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(dataset_spec_from_json(with("layout", "chw"), "d.json", dir),
                       doctest::Contains("'layout' must be \"nchw\" or \"nhwc\""),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(dataset_spec_from_json({{"format", "idx"}, {"images", "a"}}, "d.json", dir),
                       "d.json: format \"idx\" needs 'labels'", std::invalid_argument);
  write_npy(Tensor::floats({2, 6}, std::vector<float>(12, 1.0f)), dir / "x.npy");
  CHECK_THROWS_WITH_AS(load_dataset(dataset_spec_from_json(
                           with("shape", nlohmann::json::array({1, 5})), "d.json", dir)),
                       doctest::Contains("'shape' [1, 5] has 5 elements but each sample"),
                       std::invalid_argument);
  const Dataset ok = load_dataset(
      dataset_spec_from_json(with("shape", nlohmann::json::array({1, 2, 3})), "d.json", dir));
  CHECK(ok.sample_shape == Shape{1, 2, 3});
  CHECK_FALSE(ok.labelled());
}

TEST_CASE("A dataset whose samples do not fit the model input is an error naming both shapes") {
  const Graph g = load_onnx(source_dir() / "models" / "fmnist_cnn.onnx");
  Dataset d;
  d.name = "toy";
  d.sample_shape = {3, 28, 28};
  d.images.assign(3 * 784, 0.0f);
  CHECK_THROWS_WITH_AS(check_dataset_matches_model(d, g),
                       doctest::Contains("dataset toy has samples of shape [3, 28, 28] but model "
                                         "input 'input' expects [-1, 1, 28, 28]"),
                       std::invalid_argument);
  d.sample_shape = {1, 28, 28};
  CHECK_NOTHROW(check_dataset_matches_model(d, g));
}
