// One chunk of tokens (all sequences of a step together, as rows [T, ...]) goes through each
// layer as: rows in parallel, residual += hidden and x = RMSNorm(residual) * w; then the family's
// mixer (cpu/mixer.h) from x to the next hidden. The output head runs once per sequence that wants
// logits, on its last row.
#include "engine/cpu/cpu_model.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/cpu/gemm.h"
#include "engine/simd/simd_math.h"

namespace mamba::cpu {
namespace {

constexpr int64_t kDefaultChunkTokens = 512;

template <class L>
void WidenRowTyped(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const typename L::T*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, L::Load(p + i));
  if (i < n) simd::StoreF32Tail(dst + i, L::LoadTail(p + i, n - i), n - i);
}

// Row `row` of a [rows, n] tensor widened into dst.
void WidenRow(const model::TensorView& t, int64_t row, int64_t n, float* dst) {
  const size_t offset = static_cast<size_t>(row * n) * model::DTypeSize(t.dtype);
  const void* src = static_cast<const uint8_t*>(t.data) + offset;
  switch (t.dtype) {
    case model::DType::kF32:
      WidenRowTyped<simd::F32Weights>(src, dst, n);
      return;
    case model::DType::kF16:
      WidenRowTyped<simd::F16Weights>(src, dst, n);
      return;
    case model::DType::kBF16:
      WidenRowTyped<simd::BF16Weights>(src, dst, n);
      return;
  }
}

// out = RMSNorm(in) * w over n values.
void RmsNorm(const float* in, const float* w, int64_t n, float eps, float* out) {
  simd::RmsNorm(in, w, n, eps, out);
}

// acc += add over n values.
void AddInPlace(float* acc, const float* add, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_loadu_ps(add + i)));
  }
  for (; i < n; ++i) acc[i] += add[i];
}

}  // namespace

struct CpuModel::Piece {
  SequenceState* state;
  absl::Span<const int32_t> tokens;
  int64_t row;    // first row of the chunk
  float* logits;  // set when this piece ends its sequence and logits are wanted
};

struct CpuModel::Scratch {
  std::vector<int32_t> tokens;                  // [T]
  std::vector<float> residual, hidden, normed;  // [T][d_model]
  std::vector<float> final_x;                   // [P][d_model]
  std::vector<float*> logit_rows;
  std::vector<ChunkPiece> mixer_pieces;
};

CpuModel::CpuModel(const model::ModelConfig& config, model::ModelWeights weights, int num_threads)
    : config_(config),
      weights_(std::move(weights)),
      pool_(num_threads),
      max_chunk_tokens_(kDefaultChunkTokens),
      scratch_(std::make_unique<Scratch>()) {}

CpuModel::~CpuModel() = default;

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::Create(const model::ModelConfig& config,
                                                           model::ModelWeights weights,
                                                           int num_threads) {
  absl::Status valid = config.Validate();
  if (!valid.ok()) return valid;
  valid = weights.Validate(config, "cpu backend weights");
  if (!valid.ok()) return valid;
  if (num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu_threads ", num_threads, " is invalid; allowed: 0 (all cores) or > 0"));
  }
  if (num_threads == 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads = std::max(num_threads, 1);
  std::unique_ptr<CpuModel> model(new CpuModel(config, std::move(weights), num_threads));
  absl::StatusOr<std::unique_ptr<Mixer>> mixer = MakeMixer(config, model->weights_, &model->pool_);
  if (!mixer.ok()) return mixer.status();
  model->mixer_ = *std::move(mixer);
  for (const model::LayerWeights& w : model->weights_.layers)
    model->norm_.push_back(w.norm.ToFloat());
  model->norm_f_ = model->weights_.norm_f.ToFloat();
  return model;
}

absl::Status CpuModel::Forward(absl::Span<const SequenceInput> batch) {
  const size_t state_elements = static_cast<size_t>(model::StateLayoutOf(config_).elements());
  std::vector<const SequenceState*> states;
  states.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& in = batch[i];
    if (in.state == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no state"));
    }
    if (in.state->values().size() != state_elements) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " has a state of ", in.state->values().size(),
                       " values; this model's states have ", state_elements));
    }
    if (in.tokens.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, " has no tokens; allowed: at least one"));
    }
    for (size_t t = 0; t < in.tokens.size(); ++t) {
      const int32_t id = in.tokens[t];
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " token ", t, " has id ", id,
                                                       ", outside the vocabulary; allowed: 0..",
                                                       config_.vocab_size - 1));
      }
    }
    states.push_back(in.state);
  }
  std::sort(states.begin(), states.end());
  if (std::adjacent_find(states.begin(), states.end()) != states.end()) {
    return absl::InvalidArgumentError("two sequences of one batch share a state");
  }

  // Cut the token stream into chunks of at most max_chunk_tokens_ rows.
  std::vector<Piece> pieces;
  int64_t used = 0;
  for (const SequenceInput& in : batch) {
    const int64_t len = static_cast<int64_t>(in.tokens.size());
    for (int64_t offset = 0; offset < len;) {
      const int64_t take = std::min(len - offset, max_chunk_tokens_ - used);
      const bool last = offset + take == len;
      pieces.push_back(
          {in.state, in.tokens.subspan(offset, take), used, last ? in.logits : nullptr});
      used += take;
      offset += take;
      if (used == max_chunk_tokens_) {
        RunChunk(pieces, used);
        pieces.clear();
        used = 0;
      }
    }
  }
  if (used > 0) RunChunk(pieces, used);
  return absl::OkStatus();
}

void CpuModel::RunChunk(absl::Span<const Piece> pieces, int64_t num_tokens) {
  const model::ModelConfig& c = config_;
  const int64_t dm = c.d_model;
  const int64_t t_rows = num_tokens;
  const float eps = c.layer_norm_epsilon;

  Scratch& sc = *scratch_;
  auto ensure = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  };
  ensure(sc.residual, t_rows * dm);
  ensure(sc.hidden, t_rows * dm);
  ensure(sc.normed, t_rows * dm);
  sc.tokens.resize(t_rows);
  sc.mixer_pieces.clear();
  for (const Piece& p : pieces) {
    std::copy(p.tokens.begin(), p.tokens.end(), sc.tokens.begin() + p.row);
    sc.mixer_pieces.push_back({p.state, p.row, static_cast<int64_t>(p.tokens.size())});
  }
  float* residual = sc.residual.data();
  float* hidden = sc.hidden.data();
  float* normed = sc.normed.data();

  pool_.ParallelFor(t_rows, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) WidenRow(weights_.embedding, sc.tokens[t], dm, hidden + t * dm);
  });

  for (int l = 0; l < c.n_layer; ++l) {
    const std::vector<float>& norm = norm_[l];
    pool_.ParallelFor(t_rows, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* res = residual + t * dm;
        if (l == 0) {
          std::copy(hidden + t * dm, hidden + (t + 1) * dm, res);
        } else {
          AddInPlace(res, hidden + t * dm, dm);
        }
        RmsNorm(res, norm.data(), dm, eps, normed + t * dm);
      }
    });
    mixer_->Forward(l, sc.mixer_pieces, t_rows, normed, hidden);
  }

  // Output head on the last row of each sequence that wants logits.
  sc.logit_rows.clear();
  std::vector<int64_t> last_rows;
  for (const Piece& p : pieces) {
    if (p.logits == nullptr) continue;
    sc.logit_rows.push_back(p.logits);
    last_rows.push_back(p.row + static_cast<int64_t>(p.tokens.size()) - 1);
  }
  const int64_t outputs = static_cast<int64_t>(last_rows.size());
  if (outputs == 0) return;
  ensure(sc.final_x, outputs * dm);
  for (int64_t i = 0; i < outputs; ++i) {
    const int64_t t = last_rows[i];
    float* res = residual + t * dm;
    if (c.n_layer > 0) {
      AddInPlace(res, hidden + t * dm, dm);
    } else {
      std::copy(hidden + t * dm, hidden + (t + 1) * dm, res);
    }
    RmsNorm(res, norm_f_.data(), dm, eps, sc.final_x.data() + i * dm);
  }
  const WeightMatrix head = WeightMatrix::From(weights_.lm_head);
  pool_.ParallelFor(head.rows, 8, [&](int64_t n0, int64_t n1) {
    MatMul(sc.final_x.data(), dm, outputs, head, nullptr, n0, n1,
           OutputRows{nullptr, 0, sc.logit_rows.data()});
  });
}

}  // namespace mamba::cpu
