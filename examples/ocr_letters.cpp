#include "ocr_letters.hpp"

#include <zlib.h>

#include <charconv>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace dlrt::examples {
namespace {

constexpr int kLeadingFields = 6;  // id, letter, next_id, word_id, position, fold

[[noreturn]] void bad_line(const std::string& path, std::int64_t line, const std::string& problem) {
  throw std::runtime_error(path + ":" + std::to_string(line) + ": " + problem);
}

// Fields separated by tabs; a trailing tab or line ending is not a field.
std::vector<std::string_view> split_fields(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == '\t'))
    text.remove_suffix(1);
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t tab = text.find('\t', start);
    const std::size_t end = tab == std::string_view::npos ? text.size() : tab;
    fields.push_back(text.substr(start, end - start));
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  return fields;
}

struct GzipFile {
  gzFile handle;
  explicit GzipFile(const std::string& path) : handle(gzopen(path.c_str(), "rb")) {}
  ~GzipFile() {
    if (handle != nullptr) gzclose(handle);
  }
  GzipFile(const GzipFile&) = delete;
  GzipFile& operator=(const GzipFile&) = delete;
};

// Reads one line, however long; false at the end of the file.
bool read_line(GzipFile& file, std::string& line, const std::string& path, std::int64_t number) {
  line.clear();
  char buffer[4096];
  while (gzgets(file.handle, buffer, sizeof buffer) != nullptr) {
    line += buffer;
    if (!line.empty() && line.back() == '\n') return true;
  }
  int status = Z_OK;
  const char* message = gzerror(file.handle, &status);
  if (status != Z_OK && status != Z_STREAM_END)
    bad_line(path, number, std::string("cannot read: ") + (message ? message : "zlib error"));
  return !line.empty();
}

}  // namespace

std::string OcrWord::text() const {
  std::string out;
  for (int letter : letters) out += static_cast<char>('a' + letter);
  return out;
}

OcrLetters load_ocr_letters(const std::string& path) {
  GzipFile file(path);
  if (file.handle == nullptr) throw std::runtime_error(path + ": cannot open the file");
  OcrLetters data;
  std::string line;
  std::int64_t number = 0;
  long long expected_next = -1;  // the id the open word's next letter must have
  OcrWord* open_word = nullptr;
  while (read_line(file, line, path, number + 1)) {
    ++number;
    const std::vector<std::string_view> fields = split_fields(line);
    if (fields.size() == 1 && fields[0].empty()) continue;  // a blank line
    if (fields.size() != kLeadingFields + kOcrPixels)
      bad_line(path, number,
               "has " + std::to_string(fields.size()) + " fields, not " +
                   std::to_string(kLeadingFields + kOcrPixels));
    long long numbers[kLeadingFields] = {};
    for (int i : {0, 2, 3, 4, 5}) {
      const std::string_view f = fields[static_cast<std::size_t>(i)];
      const auto [end, error] = std::from_chars(f.data(), f.data() + f.size(), numbers[i]);
      if (error != std::errc() || end != f.data() + f.size())
        bad_line(path, number,
                 "field " + std::to_string(i + 1) + " '" + std::string(f) + "' is not an integer");
    }
    const long long id = numbers[0], next_id = numbers[2], word_id = numbers[3];
    const long long position = numbers[4], fold = numbers[5];
    const std::string_view letter = fields[1];
    if (letter.size() != 1 || letter[0] < 'a' || letter[0] > 'z')
      bad_line(path, number, "letter '" + std::string(letter) + "' is not one of a-z");
    if (fold < 0 || fold > 9)
      bad_line(path, number, "fold " + std::to_string(fold) + " is not in 0-9");

    if (open_word == nullptr) {
      if (position != 1)
        bad_line(path, number,
                 "starts a word at position " + std::to_string(position) + " instead of 1");
      data.words.emplace_back();
      open_word = &data.words.back();
      open_word->word_id = static_cast<int>(word_id);
      open_word->fold = static_cast<int>(fold);
    } else {
      if (id != expected_next)
        bad_line(path, number,
                 "has id " + std::to_string(id) + ", but the previous letter's next_id is " +
                     std::to_string(expected_next));
      if (word_id != open_word->word_id || fold != open_word->fold)
        bad_line(path, number, "changes word_id or fold inside a word");
      if (position != static_cast<long long>(open_word->letters.size()) + 1)
        bad_line(path, number,
                 "has position " + std::to_string(position) + ", expected " +
                     std::to_string(open_word->letters.size() + 1));
    }
    std::array<std::uint8_t, kOcrPixels> image{};
    for (int p = 0; p < kOcrPixels; ++p) {
      const std::string_view f = fields[static_cast<std::size_t>(kLeadingFields + p)];
      if (f != "0" && f != "1")
        bad_line(path, number,
                 "pixel " + std::to_string(p) + " is '" + std::string(f) + "', not 0 or 1");
      image[static_cast<std::size_t>(p)] = f == "1" ? 1 : 0;
    }
    open_word->letters.push_back(letter[0] - 'a');
    open_word->images.push_back(image);
    ++data.letter_count;
    if (next_id == -1) {
      open_word = nullptr;
    } else {
      expected_next = next_id;
    }
  }
  if (open_word != nullptr)
    bad_line(path, number, "ends inside a word (the last letter's next_id is not -1)");
  if (data.words.empty()) throw std::runtime_error(path + ": holds no letters");
  return data;
}

}  // namespace dlrt::examples
