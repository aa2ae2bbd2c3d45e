// The handwriting demo's reader of the OCR letters format: a well-formed
// file reads back word by word, and every kind of malformed input is
// refused with the file, the line and the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "ocr_letters.hpp"

namespace dlrt::examples {
namespace {

// One line of the format; the image has `ones` set pixels first.
std::string letter_line(int id, char letter, int next_id, int word_id, int position, int fold,
                        int ones = 3, const std::string& pixel = "") {
  std::string line = std::to_string(id) + "\t" + std::string(1, letter) + "\t" +
                     std::to_string(next_id) + "\t" + std::to_string(word_id) + "\t" +
                     std::to_string(position) + "\t" + std::to_string(fold);
  for (int p = 0; p < kOcrPixels; ++p) {
    line += '\t';
    line += (p == 5 && !pixel.empty()) ? pixel : (p < ones ? "1" : "0");
  }
  return line + "\t\n";
}

class OcrLettersFile : public ::testing::Test {
protected:
  std::string path = (std::filesystem::temp_directory_path() /
                      ("dlrt_ocr_" + std::to_string(::getpid()) + ".data"))
                         .string();
  void write(const std::string& text) { std::ofstream(path) << text; }
  void TearDown() override { std::filesystem::remove(path); }
  // The reader refuses the file with a message holding `needle`.
  ::testing::AssertionResult refused(const std::string& needle) {
    try {
      load_ocr_letters(path);
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      if (what.find(needle) != std::string::npos && what.find(path) != std::string::npos)
        return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "message '" << what << "' lacks '" << needle << "'";
    }
    return ::testing::AssertionFailure() << "no error";
  }
};

TEST_F(OcrLettersFile, ReadsWordsInOrder) {
  write(letter_line(1, 'o', 2, 1, 1, 3, 7) + letter_line(2, 'k', -1, 1, 2, 3) +
        letter_line(3, 'z', -1, 2, 1, 0, 128));
  const OcrLetters data = load_ocr_letters(path);
  ASSERT_EQ(data.words.size(), 2u);
  EXPECT_EQ(data.letter_count, 3);
  EXPECT_EQ(data.words[0].text(), "ok");
  EXPECT_EQ(data.words[0].fold, 3);
  EXPECT_EQ(data.words[1].text(), "z");
  EXPECT_EQ(data.words[1].fold, 0);
  EXPECT_EQ(data.words[0].images[0][6], 1);
  EXPECT_EQ(data.words[0].images[0][7], 0);
  EXPECT_EQ(data.words[1].images[0][127], 1);
}

TEST_F(OcrLettersFile, ReadsTheSharedDataSet) {
  const std::string shared =
      std::string(DLRT_SOURCE_DIR) + "/../shared/data/ocr-letters/letter.data.gz";
  if (!std::filesystem::exists(shared)) GTEST_SKIP() << "the OCR letters are not at " << shared;
  const OcrLetters data = load_ocr_letters(shared);
  // The counts its README gives.
  EXPECT_EQ(data.words.size(), 6877u);
  EXPECT_EQ(data.letter_count, 52152);
}

TEST_F(OcrLettersFile, RefusesMalformedInput) {
  EXPECT_THROW(load_ocr_letters(path + ".missing"), std::runtime_error);
  write("1\ta\t-1\t1\t1\t0\t1\n");
  EXPECT_TRUE(refused(":1: has 7 fields, not 134"));
  write(letter_line(1, 'A', -1, 1, 1, 0));
  EXPECT_TRUE(refused("letter 'A' is not one of a-z"));
  write(letter_line(1, 'a', -1, 1, 1, 0, 3, "2"));
  EXPECT_TRUE(refused("pixel 5 is '2'"));
  write(letter_line(1, 'a', -1, 1, 1, 12));
  EXPECT_TRUE(refused("fold 12 is not in 0-9"));
  write(letter_line(1, 'a', 2, 1, 1, 0) + letter_line(3, 'b', -1, 1, 2, 0));
  EXPECT_TRUE(refused(":2: has id 3"));
  write(letter_line(1, 'a', 2, 1, 1, 0) + letter_line(2, 'b', -1, 1, 3, 0));
  EXPECT_TRUE(refused("has position 3, expected 2"));
  write(letter_line(1, 'a', 2, 1, 1, 0) + letter_line(2, 'b', -1, 1, 2, 4));
  EXPECT_TRUE(refused("changes word_id or fold"));
  write(letter_line(1, 'a', 2, 1, 2, 0));
  EXPECT_TRUE(refused("starts a word at position 2"));
  write(letter_line(1, 'a', 2, 1, 1, 0));
  EXPECT_TRUE(refused("ends inside a word"));
  write("x\ta" + letter_line(1, 'a', -1, 1, 1, 0).substr(3));
  EXPECT_TRUE(refused("is not an integer"));
  write("\n");
  EXPECT_TRUE(refused("holds no letters"));
}

}  // namespace
}  // namespace dlrt::examples
