// Handwriting recognition, the lecture's recurrent-network example: each
// 16x8 letter image of a word goes through a small CNN, a bidirectional LSTM
// reads the word's letter features in both directions, and a softmax per
// position names the letter ("U N E X P E C T E D"). Trained with Adam on
// folds 1-9 of the OCR letters, tested on fold 0.
//
//   dlrt_handwriting [--quick] [--data letter.data.gz] [--out DIR] [--epochs N]
//                    [--batch WORDS] [--hidden H] [--lr RATE] [--seed S]
//                    [--device auto|cpu|cuda]      (auto: the GPU when there is one)
//
// Writes DIR/handwriting-metrics.json (per-epoch loss and accuracy, the test
// confusion matrix) for tools/plot_handwriting.py, and DIR/handwriting.safetensors
// with PyTorch's parameter names (cnn.0.weight, lstm.weight_ih_l0_reverse,
// classifier.bias): an nn.Module with members cnn (nn.Sequential), lstm
// (nn.LSTM, bidirectional) and classifier (nn.Linear) loads it as it is.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "dlrt/dlrt.hpp"
#include "dlrt/nn.hpp"
#include "ocr_letters.hpp"

namespace {

using dlrt::Context;
using dlrt::Device;
using dlrt::Shape;
using dlrt::Tensor;
using dlrt::examples::OcrWord;
namespace nn = dlrt::nn;

struct Options {
  std::string data = DLRT_OCR_DATA;
  std::string out = "handwriting-out";
  bool quick = false;
  int epochs = 12;
  int batch_words = 32;
  int hidden = 128;
  float learning_rate = 3e-3f;
  std::uint64_t seed = 1;
  int test_fold = 0;
  std::string device = "auto";  // auto: the GPU when there is one
};

[[noreturn]] void usage_error(const std::string& message) {
  throw std::invalid_argument(message +
                              "\nusage: dlrt_handwriting [--quick] [--data FILE] [--out DIR] "
                              "[--epochs N] [--batch WORDS] [--hidden H] [--lr RATE] [--seed S] "
                              "[--device auto|cpu|cuda]");
}

long long parse_integer(const std::string& option, const std::string& text, long long low,
                        long long high) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < low || value > high)
    usage_error("option " + option + " = '" + text + "': must be an integer in [" +
                std::to_string(low) + ", " + std::to_string(high) + "]");
  return value;
}

Options parse_options(int argc, char** argv) {
  Options options;
  bool epochs_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("option " + arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--data") {
      options.data = value();
    } else if (arg == "--out") {
      options.out = value();
    } else if (arg == "--epochs") {
      options.epochs = static_cast<int>(parse_integer(arg, value(), 1, 1000));
      epochs_given = true;
    } else if (arg == "--batch") {
      options.batch_words = static_cast<int>(parse_integer(arg, value(), 1, 4096));
    } else if (arg == "--hidden") {
      options.hidden = static_cast<int>(parse_integer(arg, value(), 1, 4096));
    } else if (arg == "--seed") {
      options.seed = static_cast<std::uint64_t>(parse_integer(arg, value(), 0, 1LL << 62));
    } else if (arg == "--device") {
      options.device = value();
      if (options.device != "auto" && options.device != "cpu" && options.device != "cuda")
        usage_error("option --device = '" + options.device + "': must be auto, cpu or cuda");
    } else if (arg == "--lr") {
      const std::string text = value();
      char* end = nullptr;
      const float rate = std::strtof(text.c_str(), &end);
      if (end != text.c_str() + text.size() || !std::isfinite(rate) || rate <= 0.0f)
        usage_error("option --lr = '" + text + "': must be a positive number");
      options.learning_rate = rate;
    } else {
      usage_error("unknown option '" + arg + "'");
    }
  }
  // The quick mode (the README's main command) trains for about a minute.
  if (options.quick && !epochs_given) options.epochs = 4;
  return options;
}

// ---- the model ------------------------------------------------------------------

// cnn: 1x16x8 -> conv3x3(16) relu maxpool2 -> 16x8x4 -> conv3x3(32) relu
// maxpool2 -> 32x4x2 -> flatten 256 -> linear 128 relu; then a bidirectional
// LSTM over the word and a linear classifier per position.
class HandwritingNet : public nn::Module {
public:
  HandwritingNet(int hidden, nn::Generator& generator, Device device)
      : Module(device),
        cnn_(device),
        lstm_(
            nn::RecurrentOptions{
                .input_size = kFeatures, .hidden_size = hidden, .bidirectional = true},
            generator, device),
        classifier_(2 * hidden, dlrt::examples::kOcrClasses, generator, /*bias=*/true, device) {
    dlrt::Conv2dParams same;
    same.pad_h = same.pad_w = 1;
    dlrt::Pool2dParams halve;  // 2x2 windows, stride 2
    cnn_.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 1, .out_channels = 16, .params = same},
                         generator, device);
    cnn_.add<nn::ReLU>(device);
    cnn_.add<nn::MaxPool2d>(halve, device);
    cnn_.add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 16, .out_channels = 32, .params = same},
                         generator, device);
    cnn_.add<nn::ReLU>(device);
    cnn_.add<nn::MaxPool2d>(halve, device);
    cnn_.add<nn::Flatten>(device);
    cnn_.add<nn::Linear>(32 * 4 * 2, kFeatures, generator, /*bias=*/true, device);
    cnn_.add<nn::ReLU>(device);
    register_module("cnn", cnn_);
    register_module("lstm", lstm_);
    register_module("classifier", classifier_);
  }
  const char* type() const override { return "HandwritingNet"; }

  // images [T*B, 1, 16, 8], time-major (row t*B + b): logits [T, B, 26].
  Tensor forward(Context& ctx, const Tensor& images, std::int64_t T, std::int64_t B,
                 const std::vector<int>& lengths) {
    const Tensor features = cnn_.forward(ctx, images).view(Shape{T, B, kFeatures});
    return classifier_.forward(ctx, lstm_.forward(ctx, features, lengths));
  }
  void backward(Context& ctx, const Tensor& dlogits) {
    const Tensor dfeatures = lstm_.backward(ctx, classifier_.backward(ctx, dlogits));
    cnn_.backward(ctx, dfeatures.view(Shape{dfeatures.size(0) * dfeatures.size(1), kFeatures}));
  }

private:
  static constexpr int kFeatures = 128;
  nn::Sequential cnn_;
  nn::LSTM lstm_;
  nn::Linear classifier_;
};

// ---- batches --------------------------------------------------------------------

// Words of similar length go together, so little of a batch is padding.
struct Batch {
  std::int64_t T = 0, B = 0;
  std::vector<int> lengths;
  Tensor images, labels, mask;
  std::vector<const OcrWord*> words;
};

// Built on the host, then copied to `device`.
Batch make_batch(const std::vector<const OcrWord*>& words, Device device) {
  Batch batch;
  batch.words = words;
  batch.B = static_cast<std::int64_t>(words.size());
  for (const OcrWord* w : words) {
    batch.lengths.push_back(static_cast<int>(w->letters.size()));
    batch.T = std::max<std::int64_t>(batch.T, static_cast<std::int64_t>(w->letters.size()));
  }
  constexpr int H = dlrt::examples::kOcrHeight, W = dlrt::examples::kOcrWidth;
  const std::int64_t rows = batch.T * batch.B;
  std::vector<float> pixels(static_cast<std::size_t>(rows * H * W), 0.0f);
  std::vector<float> mask(static_cast<std::size_t>(rows), 0.0f);
  batch.labels = Tensor(Shape{rows}, Device::cpu(), dlrt::DType::I32);
  std::int32_t* labels = batch.labels.data_i32();
  std::fill(labels, labels + rows, -1);
  for (std::int64_t b = 0; b < batch.B; ++b) {
    const OcrWord& word = *words[static_cast<std::size_t>(b)];
    for (std::size_t t = 0; t < word.letters.size(); ++t) {
      const std::int64_t row = static_cast<std::int64_t>(t) * batch.B + b;
      labels[row] = word.letters[t];
      mask[static_cast<std::size_t>(row)] = 1.0f;
      std::copy(word.images[t].begin(), word.images[t].end(),
                pixels.begin() + static_cast<std::ptrdiff_t>(row * H * W));
    }
  }
  batch.images = Tensor::from_vector(Shape{rows, 1, H, W}, pixels, device);
  batch.mask = Tensor::from_vector(Shape{rows}, mask, device);
  if (!device.is_cpu()) batch.labels = batch.labels.to(device);
  return batch;
}

// Sorted by length with ties in random order, then cut into batches.
std::vector<Batch> make_batches(std::vector<const OcrWord*> words, int batch_words,
                                nn::Generator& generator, Device device) {
  std::vector<std::uint64_t> keys(words.size());
  for (auto& k : keys) k = generator.next();
  std::vector<std::size_t> order(words.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const std::size_t la = words[a]->letters.size(), lb = words[b]->letters.size();
    return la != lb ? la < lb : keys[a] < keys[b];
  });
  std::vector<Batch> batches;
  for (std::size_t start = 0; start < order.size();
       start += static_cast<std::size_t>(batch_words)) {
    std::vector<const OcrWord*> chunk;
    for (std::size_t i = start; i < std::min(order.size(), start + batch_words); ++i)
      chunk.push_back(words[order[i]]);
    batches.push_back(make_batch(chunk, device));
  }
  return batches;
}

template <class T>
void shuffle(std::vector<T>& items, nn::Generator& generator) {
  for (std::size_t i = items.size(); i > 1; --i)
    std::swap(items[i - 1], items[static_cast<std::size_t>(generator.below(i))]);
}

// ---- evaluation -----------------------------------------------------------------

struct Evaluation {
  std::int64_t letters = 0, letters_right = 0, words = 0, words_right = 0;
  std::vector<std::vector<std::int64_t>> confusion;           // [truth][prediction]
  std::vector<std::pair<std::string, std::string>> examples;  // (truth, prediction)
  double letter_accuracy() const { return letters ? double(letters_right) / double(letters) : 0.0; }
  double word_accuracy() const { return words ? double(words_right) / double(words) : 0.0; }
};

// Counts the right letters of `logits` ([T, B, 26]) for the words of `batch`.
void score(const Batch& batch, const Tensor& logits, Evaluation& evaluation) {
  const std::vector<int> predicted =
      nn::argmax_rows(logits.view(Shape{batch.T * batch.B, dlrt::examples::kOcrClasses}));
  for (std::int64_t b = 0; b < batch.B; ++b) {
    const OcrWord& word = *batch.words[static_cast<std::size_t>(b)];
    std::string guess;
    bool all_right = true;
    for (std::size_t t = 0; t < word.letters.size(); ++t) {
      const int p = predicted[static_cast<std::size_t>(static_cast<std::int64_t>(t) * batch.B + b)];
      guess += static_cast<char>('a' + p);
      const bool right = p == word.letters[t];
      evaluation.letters_right += right;
      all_right = all_right && right;
      if (!evaluation.confusion.empty())
        ++evaluation
              .confusion[static_cast<std::size_t>(word.letters[t])][static_cast<std::size_t>(p)];
    }
    evaluation.letters += static_cast<std::int64_t>(word.letters.size());
    evaluation.words_right += all_right;
    ++evaluation.words;
    evaluation.examples.emplace_back(word.text(), guess);
  }
}

Evaluation evaluate(Context& ctx, HandwritingNet& model, const std::vector<Batch>& batches) {
  Evaluation evaluation;
  evaluation.confusion.assign(dlrt::examples::kOcrClasses,
                              std::vector<std::int64_t>(dlrt::examples::kOcrClasses, 0));
  model.train(false);
  for (const Batch& batch : batches)
    score(batch, model.forward(ctx, batch.images, batch.T, batch.B, batch.lengths), evaluation);
  model.train(true);
  return evaluation;
}

// "unexpected" as the lecture writes it: "U N E X P E C T E D".
std::string spaced(const std::string& word) {
  std::string out;
  for (char c : word) {
    if (!out.empty()) out += ' ';
    out += static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// ---- output ---------------------------------------------------------------------

struct EpochRecord {
  int epoch = 0;
  double train_loss = 0, train_letter_accuracy = 0, test_letter_accuracy = 0,
         test_word_accuracy = 0, seconds = 0, letters_per_second = 0;
};

void write_metrics(const std::string& path, const Options& options,
                   const std::vector<EpochRecord>& epochs, const Evaluation& test,
                   double total_seconds) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error(path + ": cannot write");
  out << "{\n  \"mode\": \"" << (options.quick ? "quick" : "full") << "\",\n"
      << "  \"test_fold\": " << options.test_fold << ",\n  \"seconds\": " << total_seconds
      << ",\n  \"test_letter_accuracy\": " << test.letter_accuracy()
      << ",\n  \"test_word_accuracy\": " << test.word_accuracy() << ",\n  \"epochs\": [\n";
  for (std::size_t i = 0; i < epochs.size(); ++i) {
    const EpochRecord& e = epochs[i];
    out << "    {\"epoch\": " << e.epoch << ", \"train_loss\": " << e.train_loss
        << ", \"train_letter_accuracy\": " << e.train_letter_accuracy
        << ", \"test_letter_accuracy\": " << e.test_letter_accuracy
        << ", \"test_word_accuracy\": " << e.test_word_accuracy << ", \"seconds\": " << e.seconds
        << ", \"letters_per_second\": " << e.letters_per_second << "}"
        << (i + 1 < epochs.size() ? ",\n" : "\n");
  }
  out << "  ],\n  \"confusion\": [\n";
  for (std::size_t r = 0; r < test.confusion.size(); ++r) {
    out << "    [";
    for (std::size_t c = 0; c < test.confusion[r].size(); ++c)
      out << (c ? ", " : "") << test.confusion[r][c];
    out << "]" << (r + 1 < test.confusion.size() ? ",\n" : "\n");
  }
  out << "  ]\n}\n";
}

void progress_bar(int epoch, int epochs, std::size_t done, std::size_t total, double loss,
                  double accuracy, double letters_per_second) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / std::max<std::size_t>(total, 1));
  std::printf("\repoch %2d/%d [%s%s] loss %.4f  letters %5.1f%%  %6.0f letters/s", epoch, epochs,
              std::string(static_cast<std::size_t>(filled), '#').c_str(),
              std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(), loss,
              100.0 * accuracy, letters_per_second);
  std::fflush(stdout);
}

int run(const Options& options) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const dlrt::examples::OcrLetters data = dlrt::examples::load_ocr_letters(options.data);
  std::vector<const OcrWord*> train_words, test_words;
  for (const OcrWord& w : data.words)
    (w.fold == options.test_fold ? test_words : train_words).push_back(&w);
  if (train_words.empty() || test_words.empty())
    throw std::runtime_error(options.data + ": needs words in fold " +
                             std::to_string(options.test_fold) + " and in the others");
  std::int64_t train_letters = 0;
  for (const OcrWord* w : train_words)
    train_letters += static_cast<std::int64_t>(w->letters.size());
  std::printf(
      "%s: %zu words, %lld letters; training on %zu words (%lld letters), testing on fold %d "
      "(%zu words)\n",
      options.data.c_str(), data.words.size(), static_cast<long long>(data.letter_count),
      train_words.size(), static_cast<long long>(train_letters), options.test_fold,
      test_words.size());

  const Device device =
      options.device == "cuda" || (options.device == "auto" && dlrt::cuda_available())
          ? Device::cuda(0)
          : Device::cpu();
  Context ctx(device);
  nn::Generator generator(options.seed);
  HandwritingNet model(options.hidden, generator, device);
  const dlrt::EngineQuery conv =
      dlrt::conv2d_query(ctx, dlrt::Conv2dOp::Forward, Shape{32, 16, 8, 4}, Shape{32, 16, 3, 3},
                         dlrt::Conv2dParams{1, 1});
  std::printf(
      "model: CNN + bidirectional LSTM (hidden %d), %lld parameters on %s; engines: Auto (%s for "
      "conv), %d threads\n",
      options.hidden, static_cast<long long>(model.parameter_count()),
      dlrt::to_string(device).c_str(), dlrt::to_string(conv.engine), dlrt::num_threads());

  std::vector<dlrt::optim::Parameter> parameters = model.parameters();
  dlrt::optim::AdamOptions adam;
  adam.learning_rate = options.learning_rate;
  dlrt::optim::Adam optimizer(parameters, adam);
  nn::SoftmaxCrossEntropy loss_function;
  const std::vector<Batch> test_batches = make_batches(test_words, 128, generator, device);

  const std::int64_t steps_per_epoch =
      (static_cast<std::int64_t>(train_words.size()) + options.batch_words - 1) /
      options.batch_words;
  const std::int64_t total_steps = steps_per_epoch * options.epochs;
  std::int64_t step = 0;
  std::vector<EpochRecord> history;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    std::vector<Batch> batches = make_batches(train_words, options.batch_words, generator, device);
    shuffle(batches, generator);
    double loss_sum = 0.0;
    std::int64_t letters_seen = 0;
    Evaluation train_score;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      const Batch& batch = batches[i];
      optimizer.set_learning_rate(dlrt::optim::cosine_schedule(
          step++, total_steps, options.learning_rate, options.learning_rate * 0.02f, 20));
      optimizer.zero_grad(ctx);
      const Tensor logits = model.forward(ctx, batch.images, batch.T, batch.B, batch.lengths);
      const float loss = loss_function.forward(ctx, logits, batch.labels, batch.mask);
      model.backward(ctx, loss_function.backward(ctx));
      dlrt::optim::clip_grad_norm(ctx, parameters, 5.0f);
      optimizer.step(ctx);

      score(batch, logits, train_score);
      std::int64_t batch_letters = 0;
      for (int length : batch.lengths) batch_letters += length;
      loss_sum += static_cast<double>(loss) * static_cast<double>(batch_letters);
      letters_seen += batch_letters;
      const double seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
      if (i % 8 == 7 || i + 1 == batches.size())
        progress_bar(epoch, options.epochs, i + 1, batches.size(),
                     loss_sum / static_cast<double>(letters_seen), train_score.letter_accuracy(),
                     static_cast<double>(letters_seen) / seconds);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    const Evaluation test = evaluate(ctx, model, test_batches);
    history.push_back({epoch, loss_sum / static_cast<double>(letters_seen),
                       train_score.letter_accuracy(), test.letter_accuracy(), test.word_accuracy(),
                       seconds, static_cast<double>(letters_seen) / seconds});
    std::printf("  | test: letters %.2f%%  words %.2f%%  (%.1f s)\n",
                100.0 * test.letter_accuracy(), 100.0 * test.word_accuracy(), seconds);
  }

  const Evaluation test = evaluate(ctx, model, test_batches);
  const double total = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "\nfold %d: letter accuracy %.2f%% (%lld of %lld), word accuracy %.2f%% (%lld of %lld); "
      "%.1f s in all\n",
      options.test_fold, 100.0 * test.letter_accuracy(), static_cast<long long>(test.letters_right),
      static_cast<long long>(test.letters), 100.0 * test.word_accuracy(),
      static_cast<long long>(test.words_right), static_cast<long long>(test.words), total);
  // The lecture's words first (without their capital first letter, as in the data), then others.
  std::vector<std::pair<std::string, std::string>> shown;
  for (const char* lecture : {"nexpected", "olcanic", "mbraces"})
    for (const auto& example : test.examples)
      if (example.first == lecture) {
        shown.push_back(example);
        break;
      }
  // Then a few other words, and the first mistakes, each word once.
  auto not_shown = [&](const std::string& word) {
    return std::none_of(shown.begin(), shown.end(), [&](const auto& s) { return s.first == word; });
  };
  for (const auto& example : test.examples)
    if (shown.size() < 5 && example.first == example.second && not_shown(example.first))
      shown.push_back(example);
  for (const auto& example : test.examples)
    if (shown.size() < 8 && example.first != example.second && not_shown(example.first))
      shown.push_back(example);
  for (const auto& [truth, guess] : shown)
    std::printf("  %-28s -> %-28s %s\n", spaced(truth).c_str(), spaced(guess).c_str(),
                truth == guess ? "" : "(wrong)");

  std::filesystem::create_directories(options.out);
  const std::string metrics = options.out + "/handwriting-metrics.json";
  write_metrics(metrics, options, history, test, total);
  const std::string checkpoint = options.out + "/handwriting.safetensors";
  model.save(checkpoint, {{"model", "dlrt handwriting: CNN + bidirectional LSTM"},
                          {"hidden_size", std::to_string(options.hidden)},
                          {"test_letter_accuracy", std::to_string(test.letter_accuracy())}});
  std::printf("wrote %s and %s\n", metrics.c_str(), checkpoint.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_options(argc, argv));
  } catch (const dlrt::Error& e) {
    std::fprintf(stderr, "dlrt_handwriting: dlrt error (%s): %s\n", dlrt::to_string(e.kind()),
                 e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dlrt_handwriting: %s\n", e.what());
  }
  return 1;
}
