// A reader for the OCR handwritten-letters data set in its letter.data
// format (Taskar, Guestrin and Koller, "Max-Margin Markov Networks", NIPS
// 2003): one 16x8 binary letter image per line, grouped into words. Plain
// or gzip-compressed text.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dlrt::examples {

inline constexpr int kOcrHeight = 16, kOcrWidth = 8, kOcrPixels = kOcrHeight * kOcrWidth;
inline constexpr int kOcrClasses = 26;  // 'a' .. 'z'

struct OcrWord {
  int word_id = 0;
  int fold = 0;                                              // 0 .. 9
  std::vector<int> letters;                                  // 0 .. 25, in reading order
  std::vector<std::array<std::uint8_t, kOcrPixels>> images;  // 0 or 1, row by row
  std::string text() const;                                  // "nexpected"
};

struct OcrLetters {
  std::vector<OcrWord> words;  // in the order of the file
  std::int64_t letter_count = 0;
};

// Reads `path`: tab-separated lines "id letter next_id word_id position
// fold p_0_0 ... p_15_7". Throws std::runtime_error "path:line: problem" for a
// missing file, a malformed line (field count, a non-number, a letter not in
// a-z, a pixel not 0 or 1, a fold not in 0-9) or a broken word (positions not
// 1, 2, ... in order, next_id not the next line's id, fold or word_id changing
// inside a word, a word left unfinished at the end).
OcrLetters load_ocr_letters(const std::string& path);

}  // namespace dlrt::examples
