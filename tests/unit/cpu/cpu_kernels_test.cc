// The CPU backend's building blocks: vector exp/silu/softplus against the C library, the matrix
// product against double loops in every weight dtype, its row invariance, and the thread pool.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/cpu/gemm.h"
#include "engine/cpu/thread_pool.h"
#include "engine/model/dtype.h"
#include "engine/simd/vector_math.h"
#include "gtest/gtest.h"

namespace mamba::cpu {
namespace {

std::vector<float> Grid(float lo, float hi, int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = lo + (hi - lo) * static_cast<float>(i) / (n - 1);
  return v;
}

double RelError(double got, double want) {
  if (want == 0.0) return std::abs(got);
  return std::abs(got - want) / std::abs(want);
}

TEST(ActivationsTest, ExpMatchesLibm) {
  const std::vector<float> x = Grid(-87.0f, 88.0f, 100003);  // odd length: a tail too
  std::vector<float> y(x.size());
  simd::ExpArray(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    worst = std::max(worst, RelError(y[i], std::exp(static_cast<double>(x[i]))));
  }
  EXPECT_LT(worst, 3e-7);
}

TEST(ActivationsTest, ExpEdges) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {0.0f, -100.0f, -inf, 100.0f, inf, nan, 1.0f};
  std::vector<float> y(x.size());
  simd::ExpArray(x.data(), y.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], inf);
  EXPECT_EQ(y[4], inf);
  EXPECT_TRUE(std::isnan(y[5]));
  EXPECT_NEAR(y[6], 2.718281828f, 1e-6f);
}

TEST(ActivationsTest, SiluMatchesLibm) {
  const std::vector<float> x = Grid(-80.0f, 80.0f, 40001);
  std::vector<float> y(x.size());
  simd::SiluArray(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double xd = x[i];
    const double want = xd / (1.0 + std::exp(-xd));
    ASSERT_LT(std::abs(y[i] - want), 1e-6 * std::max(1.0, std::abs(want))) << "x = " << x[i];
  }
  const float big[] = {-200.0f, 200.0f};
  float out[2];
  simd::SiluArray(big, out, 2);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 200.0f);
}

TEST(ActivationsTest, SoftplusMatchesLibmAndPyTorchThreshold) {
  const std::vector<float> x = Grid(-60.0f, 40.0f, 50001);
  std::vector<float> y(x.size());
  simd::SoftplusArray(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double xd = x[i];
    const double want = xd > 20.0 ? xd : std::log1p(std::exp(xd));
    worst = std::max(worst, RelError(y[i], want));
  }
  EXPECT_LT(worst, 4e-7);
  // Above 20 it is the identity, exactly (PyTorch's threshold).
  const float above[] = {20.5f, 33.25f};
  float out[2];
  simd::SoftplusArray(above, out, 2);
  EXPECT_EQ(out[0], 20.5f);
  EXPECT_EQ(out[1], 33.25f);
}

struct Matrix {
  model::DType dtype;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // the exact values the stored elements hold
  WeightMatrix view;
};

Matrix MakeMatrix(model::DType dtype, int64_t rows, int64_t cols, uint64_t seed) {
  Matrix m;
  m.dtype = dtype;
  std::vector<float> raw(rows * cols);
  uint64_t x = seed;
  for (float& v : raw) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>(static_cast<int64_t>(x >> 40) % 2001 - 1000) / 997.0f;
  }
  m.bytes.resize(raw.size() * model::DTypeSize(dtype));
  model::ConvertFromFloat(dtype, raw.data(), m.bytes.data(), raw.size());
  m.values.resize(raw.size());
  model::ConvertToFloat(dtype, m.bytes.data(), m.values.data(), raw.size());
  m.view = {dtype, m.bytes.data(), rows, cols};
  return m;
}

TEST(MatMulTest, MatchesDoubleLoopsInEveryDtypeAndShape) {
  const int64_t shapes[][3] = {{1, 8, 8},    {1, 77, 13},   {2, 40, 96}, {3, 33, 5},
                               {7, 65, 129}, {10, 12, 768}, {64, 24, 48}};
  for (model::DType dtype : {model::DType::kF32, model::DType::kF16, model::DType::kBF16}) {
    for (const auto& s : shapes) {
      const int64_t m = s[0], n = s[1], k = s[2];
      SCOPED_TRACE(::testing::Message()
                   << model::DTypeName(dtype) << " " << m << "x" << n << "x" << k);
      Matrix w = MakeMatrix(dtype, n, k, 3 + n);
      const Matrix x = MakeMatrix(model::DType::kF32, m, k, 5 + m);
      std::vector<float> bias(n);
      for (int64_t i = 0; i < n; ++i) bias[i] = 0.25f * static_cast<float>(i % 5);
      std::vector<float> y(m * n, -1.0f);
      MatMul(x.values.data(), k, m, w.view, bias.data(), 0, n, OutputRows{y.data(), n, nullptr});
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double want = bias[j];
          double scale = 1.0;
          for (int64_t t = 0; t < k; ++t) {
            const double p = static_cast<double>(x.values[i * k + t]) * w.values[j * k + t];
            want += p;
            scale += std::abs(p);
          }
          ASSERT_NEAR(y[i * n + j], want, 1e-6 * scale) << "row " << i << " col " << j;
        }
      }
    }
  }
}

TEST(MatMulTest, ARowsResultDoesNotDependOnItsBatchOrRange) {
  const int64_t k = 203, n = 37;
  for (model::DType dtype : {model::DType::kF32, model::DType::kF16, model::DType::kBF16}) {
    SCOPED_TRACE(model::DTypeName(dtype));
    Matrix w = MakeMatrix(dtype, n, k, 11);
    const Matrix x = MakeMatrix(model::DType::kF32, 9, k, 12);
    // Every row alone, over the whole range.
    std::vector<float> alone(9 * n);
    for (int64_t i = 0; i < 9; ++i) {
      MatMul(x.values.data() + i * k, k, 1, w.view, nullptr, 0, n,
             OutputRows{alone.data() + i * n, n, nullptr});
    }
    // Batches of every size from every start, over split ranges, through row pointers.
    for (int64_t batch = 1; batch <= 9; ++batch) {
      for (int64_t start = 0; start + batch <= 9; ++start) {
        std::vector<float> y(batch * n);
        std::vector<float*> rows(batch);
        for (int64_t i = 0; i < batch; ++i) rows[i] = y.data() + i * n;
        for (int64_t split : {int64_t{0}, int64_t{13}, int64_t{20}}) {
          MatMul(x.values.data() + start * k, k, batch, w.view, nullptr, 0, split,
                 OutputRows{nullptr, 0, rows.data()});
          MatMul(x.values.data() + start * k, k, batch, w.view, nullptr, split, n,
                 OutputRows{nullptr, 0, rows.data()});
          for (int64_t i = 0; i < batch; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              ASSERT_EQ(y[i * n + j], alone[(start + i) * n + j])
                  << "batch " << batch << " start " << start << " split " << split;
            }
          }
        }
      }
    }
  }
}

TEST(ThreadPoolTest, RunsEveryChunkOnceAndRangesCoverEverything) {
  for (int threads : {1, 2, 3, 5}) {
    SCOPED_TRACE(threads);
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int round = 0; round < 300; ++round) {
      const int64_t chunks = round % 17;
      std::vector<std::atomic<int>> hits(chunks);
      std::atomic<int> bad_thread{0};
      pool.RunChunks(chunks, [&](int64_t c, int thread) {
        if (thread < 0 || thread >= threads) bad_thread.fetch_add(1);
        hits[c].fetch_add(1);
      });
      for (int64_t c = 0; c < chunks; ++c) ASSERT_EQ(hits[c].load(), 1) << round << " " << c;
      ASSERT_EQ(bad_thread.load(), 0);
    }
    for (int64_t n : {0, 1, 7, 8, 80, 1000, 50280}) {
      for (int64_t align : {1, 8}) {
        std::vector<std::atomic<int>> covered(n);
        pool.ParallelFor(n, align, [&](int64_t b, int64_t e) {
          EXPECT_EQ(b % align, 0);
          EXPECT_LT(b, e);
          for (int64_t i = b; i < e; ++i) covered[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(covered[i].load(), 1) << n << " " << i;
      }
    }
  }
  EXPECT_EQ(ThreadPool(0).num_threads(), 1);
}

TEST(ThreadPoolTest, PerThreadScratchIsNeverShared) {
  // A thread runs one chunk at a time, so scratch indexed by the thread id needs no lock.
  ThreadPool pool(2);
  std::vector<std::atomic<int>> in_use(2);
  std::atomic<int> overlaps{0};
  std::atomic<int64_t> busy{0};
  for (int round = 0; round < 200; ++round) {
    pool.RunChunks(16, [&](int64_t, int thread) {
      if (in_use[thread].fetch_add(1) != 0) overlaps.fetch_add(1);
      for (int i = 0; i < 200; ++i) busy.fetch_add(1, std::memory_order_relaxed);
      in_use[thread].fetch_sub(1);
    });
  }
  EXPECT_EQ(overlaps.load(), 0);
}

}  // namespace
}  // namespace mamba::cpu
