// The Cudnn recurrent engine's host arithmetic (kernels/cudnn/rnn_weights.hpp),
// proven on the CPU: cuDNN's linear-layer ids, the run of dlrt's flat
// weight tensor (PyTorch's order) behind each cuDNN matrix and bias, written
// out by hand here, and the merged copies between a weight space laid out as
// cuDNN lays it out (matrices, projection, then biases per pseudo-layer,
// with alignment gaps) and the flat tensor.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "dlrt/rnn.hpp"
#include "kernels/cudnn/rnn_weights.hpp"

namespace dlrt::detail::cudnn_rnn {
namespace {

RnnParams params_of(RnnCell cell, int input, int hidden, int layers, bool bidirectional, bool bias,
                    int proj = 0) {
  RnnParams p;
  p.cell = cell;
  p.input_size = input;
  p.hidden_size = hidden;
  p.num_layers = layers;
  p.bidirectional = bidirectional;
  p.bias = bias;
  p.proj_size = proj;
  return p;
}

TEST(CudnnRnnWeights, LinLayerIdsFollowCudnnsGateOrder) {
  const RnnParams lstm = params_of(RnnCell::Lstm, 3, 4, 1, false, true, 2);
  ASSERT_EQ(lin_layer_count(lstm), 9);
  for (int gate = 0; gate < 4; ++gate) {  // i, f, g, o
    EXPECT_EQ(lin_layer(lstm, gate).kind, LinKind::Input);
    EXPECT_EQ(lin_layer(lstm, gate).gate, gate);
    EXPECT_EQ(lin_layer(lstm, 4 + gate).kind, LinKind::Recurrent);
    EXPECT_EQ(lin_layer(lstm, 4 + gate).gate, gate);
  }
  EXPECT_EQ(lin_layer(lstm, 8).kind, LinKind::Projection);
  EXPECT_EQ(lin_layer_count(params_of(RnnCell::Lstm, 3, 4, 1, false, true)), 8);

  const RnnParams gru = params_of(RnnCell::Gru, 3, 4, 1, false, true);
  ASSERT_EQ(lin_layer_count(gru), 6);
  EXPECT_EQ(lin_layer(gru, 2).kind, LinKind::Input);  // n
  EXPECT_EQ(lin_layer(gru, 2).gate, 2);
  EXPECT_EQ(lin_layer(gru, 3).kind, LinKind::Recurrent);  // r
  EXPECT_EQ(lin_layer(gru, 3).gate, 0);

  for (RnnCell cell : {RnnCell::Tanh, RnnCell::Relu}) {
    const RnnParams p = params_of(cell, 3, 4, 1, false, true);
    ASSERT_EQ(lin_layer_count(p), 2);
    EXPECT_EQ(lin_layer(p, 0).kind, LinKind::Input);
    EXPECT_EQ(lin_layer(p, 1).kind, LinKind::Recurrent);
  }
  EXPECT_EQ(pseudo_layer(0, 1, 2), 1);
  EXPECT_EQ(pseudo_layer(2, 0, 2), 4);
  EXPECT_EQ(pseudo_layer(2, 0, 1), 2);
}

// A 2-layer bidirectional LSTM, I = 3, H = 2, P = 1, with biases. PyTorch's
// flat order, per (layer, direction): weight_ih [8, I_k], weight_hh [8, 1],
// bias_ih [8], bias_hh [8], weight_hr [1, 2]; I_0 = 3, I_1 = D * P = 2.
//   l0 fwd  w_ih 0..24   w_hh 24..32   b_ih 32..40   b_hh 40..48   w_hr 48..50
//   l0 rev  w_ih 50..74  w_hh 74..82   b_ih 82..90   b_hh 90..98   w_hr 98..100
//   l1 fwd  w_ih 100..116 w_hh 116..124 b_ih 124..132 b_hh 132..140 w_hr 140..142
//   l1 rev  w_ih 142..158 w_hh 158..166 b_ih 166..174 b_hh 174..182 w_hr 182..184
TEST(CudnnRnnWeights, FlatRegionsOfAProjectedBidirectionalLstm) {
  const RnnParams p = params_of(RnnCell::Lstm, 3, 2, 2, true, true, 1);
  const FlatLayout flat(p);
  ASSERT_EQ(flat.count(), 184);
  ASSERT_EQ(flat.count(), rnn_weight_count(p));

  auto expect = [](FlatRegion r, std::int64_t offset, std::int64_t count) {
    EXPECT_EQ(r.offset, offset);
    EXPECT_EQ(r.count, count);
  };
  expect(flat.matrix(0, 0), 0, 6);    // W_i, layer 0 forward: rows 0-1 of [8, 3]
  expect(flat.matrix(0, 3), 18, 6);   // W_o
  expect(flat.matrix(1, 2), 62, 6);   // W_g, layer 0 reverse
  expect(flat.matrix(0, 4), 24, 2);   // R_i: [8, 1] rows 0-1
  expect(flat.matrix(2, 5), 118, 2);  // R_f, layer 1 forward
  expect(flat.matrix(2, 1), 104, 4);  // W_f, layer 1 forward: [8, 2] rows 2-3
  expect(flat.bias(0, 0), 32, 2);     // b_ih gate i
  expect(flat.bias(3, 7), 180, 2);    // b_hh gate o, layer 1 reverse
  expect(flat.bias(1, 5), 92, 2);     // b_hh gate f, layer 0 reverse
  expect(flat.matrix(0, 8), 48, 2);   // weight_hr [1, 2]
  expect(flat.matrix(3, 8), 182, 2);
  EXPECT_EQ(flat.bias(0, 8).count, 0);  // the projection has no bias
}

TEST(CudnnRnnWeights, NoBiasMeansNoBiasRegions) {
  const RnnParams p = params_of(RnnCell::Gru, 5, 3, 1, false, false);
  const FlatLayout flat(p);
  ASSERT_EQ(flat.count(), 9 * 5 + 9 * 3);
  for (int id = 0; id < lin_layer_count(p); ++id) EXPECT_EQ(flat.bias(0, id).count, 0);
  EXPECT_EQ(flat.matrix(0, 2).offset, 30);  // W_n: rows 6-8 of [9, 5]
  EXPECT_EQ(flat.matrix(0, 3).offset, 45);  // R_r
  EXPECT_EQ(flat.matrix(0, 5).offset, 63);  // R_n
}

// A weight space in cuDNN's arrangement: per pseudo-layer the matrices of
// ids 0.. in order, then the biases, each block after a gap (standing for
// cuDNN's alignment).
std::vector<WeightCopy> fake_cudnn_regions(const RnnParams& p, std::int64_t* space_count) {
  const FlatLayout flat(p);
  const int D = p.bidirectional ? 2 : 1;
  std::vector<WeightCopy> regions;
  std::int64_t at = 0;
  // Each block starts on a 4-float boundary after a gap, so that runs of
  // different blocks never touch.
  auto align = [&] { at = (at + 3) / 4 * 4 + 4; };
  for (int pseudo = 0; pseudo < p.num_layers * D; ++pseudo) {
    for (int id = 0; id < lin_layer_count(p); ++id) {
      const FlatRegion m = flat.matrix(pseudo, id);
      regions.push_back({at, m.offset, m.count});
      at += m.count;
    }
    align();
    for (int id = 0; id < lin_layer_count(p); ++id) {
      const FlatRegion b = flat.bias(pseudo, id);
      if (b.count == 0) continue;
      regions.push_back({at, b.offset, b.count});
      at += b.count;
    }
    align();
  }
  *space_count = at;
  return regions;
}

TEST(CudnnRnnWeights, CopiesMergeAndRoundTrip) {
  const RnnParams cases[] = {
      params_of(RnnCell::Lstm, 3, 2, 2, true, true, 1),
      params_of(RnnCell::Lstm, 7, 5, 3, true, true),
      params_of(RnnCell::Gru, 4, 6, 2, false, true),
      params_of(RnnCell::Gru, 4, 6, 1, true, false),
      params_of(RnnCell::Tanh, 1, 3, 3, true, true),
      params_of(RnnCell::Relu, 9, 2, 1, false, false),
  };
  for (const RnnParams& p : cases) {
    SCOPED_TRACE(std::string(to_string(p.cell)) + " L=" + std::to_string(p.num_layers) +
                 (p.bidirectional ? " bi" : " uni") + (p.bias ? " bias" : " nobias") +
                 " P=" + std::to_string(p.proj_size));
    const std::int64_t flat_count = rnn_weight_count(p);
    std::int64_t space_count = 0;
    const std::vector<WeightCopy> regions = fake_cudnn_regions(p, &space_count);
    std::vector<WeightCopy> copies;
    ASSERT_EQ(merge_copies(regions, flat_count, space_count, &copies), "");
    // W and R of a pseudo-layer are adjacent in both layouts, and so are
    // the biases: one copy each, plus the projection's.
    const int D = p.bidirectional ? 2 : 1;
    const std::size_t per_layer = 1 + (p.bias ? 1 : 0) + (p.proj_size > 0 ? 1 : 0);
    EXPECT_EQ(copies.size(), per_layer * static_cast<std::size_t>(p.num_layers * D));
    std::int64_t total = 0;
    for (const WeightCopy& c : copies) total += c.count;
    EXPECT_EQ(total, flat_count);

    std::vector<float> flat(static_cast<std::size_t>(flat_count));
    std::iota(flat.begin(), flat.end(), 1.0f);
    std::vector<float> space(static_cast<std::size_t>(space_count), -1.0f);
    scatter(copies, flat.data(), space.data());
    // Every region holds its own flat run.
    for (const WeightCopy& r : regions)
      for (std::int64_t i = 0; i < r.count; ++i)
        ASSERT_EQ(space[static_cast<std::size_t>(r.space + i)],
                  flat[static_cast<std::size_t>(r.flat + i)]);
    std::vector<float> back(flat.size(), 0.0f);
    gather(copies, space.data(), back.data());
    EXPECT_EQ(back, flat);
    EXPECT_EQ(covers_space(copies, space_count), total == space_count);
  }
}

TEST(CudnnRnnWeights, BadRegionsAreReported) {
  std::vector<WeightCopy> out;
  // Overlap on the flat side.
  EXPECT_NE(merge_copies({{0, 0, 4}, {4, 2, 4}}, 6, 8, &out).find("overlap"), std::string::npos);
  // Overlap on the space side.
  EXPECT_NE(merge_copies({{0, 0, 4}, {2, 4, 4}}, 8, 8, &out).find("overlap"), std::string::npos);
  // A flat element left out.
  EXPECT_NE(merge_copies({{0, 0, 4}, {4, 5, 3}}, 8, 8, &out).find("no place"), std::string::npos);
  EXPECT_NE(merge_copies({{0, 0, 4}}, 8, 8, &out).find("no place"), std::string::npos);
  // Out of either buffer.
  EXPECT_NE(merge_copies({{6, 0, 4}}, 4, 8, &out).find("outside"), std::string::npos);
  EXPECT_NE(merge_copies({{0, 2, 4}}, 4, 8, &out).find("outside"), std::string::npos);
  EXPECT_NE(merge_copies({{0, 0, 0}}, 0, 8, &out).find("0 elements"), std::string::npos);
  // Runs contiguous in one layout only stay apart.
  ASSERT_EQ(merge_copies({{0, 4, 4}, {4, 0, 4}}, 8, 8, &out), "");
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(merge_copies({{0, 0, 4}, {5, 4, 4}}, 8, 9, &out), "");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FALSE(covers_space(out, 9));
  ASSERT_EQ(merge_copies({{4, 4, 4}, {0, 0, 4}}, 8, 8, &out), "");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].count, 8);
  EXPECT_TRUE(covers_space(out, 8));
}

TEST(CudnnRnnWeights, WorkspaceLayoutAndPadding) {
  const WorkspaceLayout w = workspace_layout(1000, 300, 700);
  EXPECT_EQ(w.weight_offset, 0u);
  EXPECT_EQ(w.temp_offset, 1024u);
  EXPECT_EQ(w.temp_bytes, 700u);
  EXPECT_EQ(w.total, 1724u);
  EXPECT_EQ(workspace_layout(0, 0, 0).total, 0u);
  EXPECT_EQ(workspace_layout(256, 5, 0).temp_offset, 256u);

  const std::vector<ShortSequence> q = short_sequences({7, 5, 5, 2, 1, 1, 7}, 7);
  ASSERT_EQ(q.size(), 5u);
  EXPECT_EQ(q[0].n, 1);
  EXPECT_EQ(q[0].length, 5);
  EXPECT_EQ(q[4].n, 5);
  EXPECT_EQ(q[4].length, 1);
  EXPECT_TRUE(short_sequences({3, 3}, 3).empty());
}

}  // namespace
}  // namespace dlrt::detail::cudnn_rnn
