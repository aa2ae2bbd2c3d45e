// safetensors reading and writing. Format: https://github.com/huggingface/safetensors
// (header: u64 little-endian N, N bytes of JSON, then the data buffer that
// the header's data_offsets index, relative to its start).
#include "dlrt/checkpoint.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <span>
#include <string_view>
#include <utility>
#include <variant>

#include "dlrt/error.hpp"
#include "runtime/op_support.hpp"

namespace dlrt {
namespace {

// A header larger than this is not a checkpoint header (the reference
// implementation refuses 100 MB as well).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

[[noreturn]] void bad_file(const std::string& path, const std::string& problem) {
  throw Error(Error::Kind::InvalidArgument, "load_safetensors: file '" + path + "': " + problem);
}

// ---- a JSON reader for the header ------------------------------------------------

struct Json;
using JsonObject = std::vector<std::pair<std::string, Json>>;
using JsonArray = std::vector<Json>;
struct Json {
  std::variant<std::nullptr_t, bool, double, std::string, JsonArray, JsonObject> value;
  // Integers are kept exactly (offsets reach past 2^53).
  bool integer = false;
  std::int64_t as_integer = 0;
};

class JsonReader {
public:
  JsonReader(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  Json document() {
    Json j = value(0);
    skip_space();
    if (at_ < text_.size()) fail("text after the header's JSON object");
    return j;
  }

private:
  [[noreturn]] void fail(const std::string& what) {
    bad_file(path_, "header is not valid JSON (" + what + " at byte " + std::to_string(at_) + ")");
  }
  void skip_space() {
    while (at_ < text_.size() &&
           (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\r' || text_[at_] == '\t'))
      ++at_;
  }
  char peek() {
    skip_space();
    if (at_ >= text_.size()) fail("unexpected end");
    return text_[at_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++at_;
  }

  Json value(int depth) {
    if (depth > 16) fail("nesting deeper than a header has");
    const char c = peek();
    Json j;
    if (c == '{') {
      ++at_;
      JsonObject object;
      if (peek() == '}') {
        ++at_;
      } else {
        for (;;) {
          if (peek() != '"') fail("expected a key");
          std::string key = string();
          expect(':');
          object.emplace_back(std::move(key), value(depth + 1));
          if (peek() == ',') {
            ++at_;
            continue;
          }
          expect('}');
          break;
        }
      }
      j.value = std::move(object);
    } else if (c == '[') {
      ++at_;
      JsonArray array;
      if (peek() == ']') {
        ++at_;
      } else {
        for (;;) {
          array.push_back(value(depth + 1));
          if (peek() == ',') {
            ++at_;
            continue;
          }
          expect(']');
          break;
        }
      }
      j.value = std::move(array);
    } else if (c == '"') {
      j.value = string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      number(j);
    } else if (text_.substr(at_, 4) == "true") {
      at_ += 4, j.value = true;
    } else if (text_.substr(at_, 5) == "false") {
      at_ += 5, j.value = false;
    } else if (text_.substr(at_, 4) == "null") {
      at_ += 4, j.value = nullptr;
    } else {
      fail("unexpected character");
    }
    return j;
  }

  void number(Json& j) {
    const std::size_t start = at_;
    if (text_[at_] == '-') ++at_;
    bool fraction = false;
    while (at_ < text_.size()) {
      const char c = text_[at_];
      if (c >= '0' && c <= '9') {
        ++at_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        fraction = true;
        ++at_;
      } else {
        break;
      }
    }
    const std::string digits(text_.substr(start, at_ - start));
    if (digits == "-" || digits.empty()) fail("a malformed number");
    j.value = std::strtod(digits.c_str(), nullptr);
    if (!fraction && digits.size() <= 19) {
      j.integer = true;
      j.as_integer = std::strtoll(digits.c_str(), nullptr, 10);
    }
  }

  std::string string() {
    ++at_;  // the opening quote
    std::string out;
    for (;;) {
      if (at_ >= text_.size()) fail("an unterminated string");
      const char c = text_[at_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= text_.size()) fail("an unterminated escape");
      const char e = text_[at_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u':
          append_utf8(out, code_point());
          break;
        default:
          fail("an unknown escape");
      }
    }
  }

  unsigned hex4() {
    if (at_ + 4 > text_.size()) fail("a short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[at_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail("a bad \\u escape");
    }
    return v;
  }
  unsigned code_point() {
    unsigned cp = hex4();
    if (cp >= 0xD800 && cp < 0xDC00 && text_.substr(at_, 2) == "\\u") {
      at_ += 2;
      const unsigned low = hex4();
      if (low < 0xDC00 || low > 0xDFFF) fail("a bad surrogate pair");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return cp;
  }
  static void append_utf8(std::string& out, unsigned cp) {
    auto byte = [&](unsigned v) { out += static_cast<char>(static_cast<unsigned char>(v)); };
    if (cp < 0x80) {
      byte(cp);
    } else if (cp < 0x800) {
      byte(0xC0 | (cp >> 6)), byte(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      byte(0xE0 | (cp >> 12)), byte(0x80 | ((cp >> 6) & 0x3F)), byte(0x80 | (cp & 0x3F));
    } else {
      byte(0xF0 | (cp >> 18)), byte(0x80 | ((cp >> 12) & 0x3F));
      byte(0x80 | ((cp >> 6) & 0x3F)), byte(0x80 | (cp & 0x3F));
    }
  }

  std::string_view text_;
  const std::string& path_;
  std::size_t at_ = 0;
};

void json_escape(std::string& out, const std::string& text) {
  out += '"';
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
      out += buffer;
    } else {
      out += c;
    }
  }
  out += '"';
}

std::uint64_t read_u64_le(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool little_endian_host() {
  const std::uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

}  // namespace

// ---- writing -------------------------------------------------------------------

void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  constexpr const char* op = "save_safetensors";
  if (!little_endian_host())
    throw Error(Error::Kind::Unsupported, "save_safetensors: big-endian hosts are not supported");
  std::set<std::string> names;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    const std::string arg = "tensors[" + std::to_string(i) + "]";
    if (t.name.empty()) detail::invalid_argument(op, arg + ".name", "\"\"", "must not be empty");
    if (t.name == "__metadata__")
      detail::invalid_argument(op, arg + ".name", t.name, "is the format's reserved key");
    if (!names.insert(t.name).second)
      detail::invalid_argument(op, arg + ".name", t.name, "must be unique in the file");
    if (!t.tensor.defined())
      detail::invalid_argument(op, arg + ".tensor", "undefined tensor", "must be defined");
  }
  detail::translate_exceptions(op, [&] {
    std::string header = "{";
    if (!metadata.empty()) {
      header += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [key, value] : metadata) {
        if (!first) header += ',';
        first = false;
        json_escape(header, key);
        header += ':';
        json_escape(header, value);
      }
      header += '}';
    }
    std::uint64_t offset = 0;
    for (const NamedTensor& t : tensors) {
      if (header.size() > 1) header += ',';
      json_escape(header, t.name);
      header += ":{\"dtype\":\"";
      header += t.tensor.dtype() == DType::F32 ? "F32" : "I32";
      header += "\",\"shape\":[";
      for (int d = 0; d < t.tensor.rank(); ++d) {
        if (d > 0) header += ',';
        header += std::to_string(t.tensor.size(d));
      }
      header += "],\"data_offsets\":[";
      header += std::to_string(offset);
      header += ',';
      offset += t.tensor.bytes();
      header += std::to_string(offset);
      header += "]}";
    }
    header += '}';
    // The data starts on an 8-byte boundary, as the reference writer pads.
    while ((8 + header.size()) % 8 != 0) header += ' ';

    const std::string temporary = path + ".partial";
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      if (!out)
        throw Error(Error::Kind::InvalidArgument,
                    std::string(op) + ": cannot write '" + temporary + "'");
      unsigned char length[8];
      std::uint64_t n = header.size();
      for (int i = 0; i < 8; ++i, n >>= 8) length[i] = static_cast<unsigned char>(n & 0xFF);
      out.write(reinterpret_cast<const char*>(length), 8);
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      for (const NamedTensor& t : tensors) {
        const Tensor host = t.tensor.device().is_cpu() ? t.tensor : t.tensor.to(Device::cpu());
        out.write(reinterpret_cast<const char*>(host.data()),
                  static_cast<std::streamsize>(host.bytes()));
      }
      out.flush();
      if (!out) {
        out.close();
        std::remove(temporary.c_str());
        throw Error(Error::Kind::InvalidArgument,
                    std::string(op) + ": writing '" + temporary + "' failed (disk full?)");
      }
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
      std::remove(temporary.c_str());
      throw Error(Error::Kind::InvalidArgument,
                  std::string(op) + ": cannot replace '" + path + "'");
    }
  });
}

// ---- reading ------------------------------------------------------------------

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const NamedTensor& t : tensors)
    if (t.name == name) return t.tensor;
  throw Error(Error::Kind::InvalidArgument,
              "SafetensorsFile::at: argument 'name' = " + name + ": no tensor of that name");
}

SafetensorsFile load_safetensors(const std::string& path) {
  return detail::translate_exceptions("load_safetensors", [&] {
    if (!little_endian_host())
      throw Error(Error::Kind::Unsupported, "load_safetensors: big-endian hosts are not supported");
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) bad_file(path, "cannot be opened");
    const auto file_size = static_cast<std::uint64_t>(in.tellg());
    if (file_size < 8)
      bad_file(path,
               "is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
    in.seekg(0);
    unsigned char length[8];
    in.read(reinterpret_cast<char*>(length), 8);
    const std::uint64_t header_size = read_u64_le(length);
    if (header_size > kMaxHeaderBytes)
      bad_file(path,
               "header length " + std::to_string(header_size) + " is over the format's 100 MB");
    if (header_size > file_size - 8)
      bad_file(path, "header length " + std::to_string(header_size) + " runs past the end of the " +
                         std::to_string(file_size) + "-byte file (truncated?)");
    std::string header(header_size, '\0');
    in.read(header.data(), static_cast<std::streamsize>(header_size));
    if (!in) bad_file(path, "cannot read its header");
    const std::uint64_t data_size = file_size - 8 - header_size;

    const Json root = JsonReader(header, path).document();
    const auto* entries = std::get_if<JsonObject>(&root.value);
    if (entries == nullptr) bad_file(path, "header is not a JSON object");

    struct Entry {
      std::string name;
      DType dtype;
      Shape shape;
      std::uint64_t begin, end;
    };
    std::vector<Entry> found;
    SafetensorsFile file;
    std::set<std::string> names;
    for (const auto& [name, value] : *entries) {
      if (!names.insert(name).second) bad_file(path, "tensor '" + name + "' appears twice");
      const auto* fields = std::get_if<JsonObject>(&value.value);
      if (name == "__metadata__") {
        if (fields == nullptr) bad_file(path, "__metadata__ is not an object");
        for (const auto& [key, text] : *fields) {
          const auto* s = std::get_if<std::string>(&text.value);
          if (s == nullptr) bad_file(path, "__metadata__ value of '" + key + "' is not a string");
          file.metadata[key] = *s;
        }
        continue;
      }
      if (fields == nullptr) bad_file(path, "entry '" + name + "' is not an object");
      const Json *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
      for (const auto& [key, field] : *fields) {
        if (key == "dtype") dtype = &field;
        if (key == "shape") shape = &field;
        if (key == "data_offsets") offsets = &field;
      }
      if (!dtype || !shape || !offsets)
        bad_file(path, "tensor '" + name + "' lacks dtype, shape or data_offsets");
      const auto* dtype_name = std::get_if<std::string>(&dtype->value);
      if (dtype_name == nullptr)
        bad_file(path, "tensor '" + name + "' has a dtype that is not a string");
      Entry e;
      e.name = name;
      if (*dtype_name == "F32") {
        e.dtype = DType::F32;
      } else if (*dtype_name == "I32") {
        e.dtype = DType::I32;
      } else {
        throw Error(Error::Kind::Unsupported, "load_safetensors: file '" + path + "': tensor '" +
                                                  name + "' has dtype " + *dtype_name +
                                                  "; dlrt reads F32 and I32");
      }
      const auto* dims = std::get_if<JsonArray>(&shape->value);
      if (dims == nullptr || dims->size() > static_cast<std::size_t>(Shape::kMaxRank))
        bad_file(path, "tensor '" + name + "' has a shape that is not a list of at most " +
                           std::to_string(Shape::kMaxRank) + " extents");
      std::vector<std::int64_t> extents;
      std::uint64_t count = 1;
      for (const Json& d : *dims) {
        if (!d.integer || d.as_integer < 1 || d.as_integer > detail::kMaxElements)
          bad_file(path, "tensor '" + name +
                             "' has an extent that is not an integer in [1, 2^40] "
                             "(dlrt tensors have no empty dimensions)");
        extents.push_back(d.as_integer);
        count *= static_cast<std::uint64_t>(d.as_integer);
        if (count > static_cast<std::uint64_t>(detail::kMaxElements))
          bad_file(path, "tensor '" + name + "' has more than 2^40 elements");
      }
      e.shape = Shape(std::span<const std::int64_t>(extents));
      const auto* range = std::get_if<JsonArray>(&offsets->value);
      if (range == nullptr || range->size() != 2 || !(*range)[0].integer || !(*range)[1].integer ||
          (*range)[0].as_integer < 0 || (*range)[1].as_integer < (*range)[0].as_integer)
        bad_file(path, "tensor '" + name +
                           "' has data_offsets that are not [begin, end] with 0 <= begin <= end");
      e.begin = static_cast<std::uint64_t>((*range)[0].as_integer);
      e.end = static_cast<std::uint64_t>((*range)[1].as_integer);
      if (e.end > data_size)
        bad_file(path, "tensor '" + name + "' data_offsets [" + std::to_string(e.begin) + ", " +
                           std::to_string(e.end) + "] run past the " + std::to_string(data_size) +
                           "-byte data (truncated?)");
      if (e.end - e.begin != count * 4)
        bad_file(path, "tensor '" + name + "' of shape " + e.shape.to_string() + " needs " +
                           std::to_string(count * 4) + " bytes but data_offsets hold " +
                           std::to_string(e.end - e.begin));
      found.push_back(std::move(e));
    }
    std::sort(found.begin(), found.end(),
              [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
    std::uint64_t expected = 0;
    for (const Entry& e : found) {
      if (e.begin != expected)
        bad_file(path, "tensor '" + e.name + "' starts at byte " + std::to_string(e.begin) +
                           (e.begin < expected ? ", overlapping the tensor before it"
                                               : ", leaving a gap after the tensor before it"));
      expected = e.end;
    }
    if (expected != data_size)
      bad_file(path, "the data is " + std::to_string(data_size) + " bytes but the tensors cover " +
                         std::to_string(expected));
    for (const Entry& e : found) {
      Tensor t(e.shape, Device::cpu(), e.dtype);
      in.seekg(static_cast<std::streamoff>(8 + header_size + e.begin));
      in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(e.end - e.begin));
      if (!in) bad_file(path, "cannot read the data of tensor '" + e.name + "'");
      file.tensors.push_back({e.name, std::move(t)});
    }
    return file;
  });
}

}  // namespace dlrt
