// What the engine reports about the model it serves (GetModelInfo, the startup log, metrics
// labels). Plain values, filled once when the engine is created.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/model_config.h"

namespace mamba {

struct ModelInfo {
  std::string name;
  std::string source;
  std::string identity;
  model::ModelConfig config;
  int64_t num_parameters = 0;
  std::string backend;  // cpu | cuda
  std::string device;
  std::string weight_dtype;
  std::string state_dtype;
  int64_t weight_bytes = 0;
  int64_t state_bytes_per_session = 0;
  int32_t num_slots = 0;
  int32_t tokenizer_vocab_size = 0;
  std::string tokenizer_kind;  // bpe | byte
  // Bytes of text the longest token stands for (its decoded bytes, special tokens included): a
  // text of N bytes has at least N / max_token_bytes tokens, before normalization.
  int32_t max_token_bytes = 1;
  std::optional<int32_t> eos_token_id;
  // The special tokens the tokenizer puts before a text when asked to add them (Llama-style
  // tokenizers: the BOS; none for GPT-NeoX's): a stateless prompt and a session's first turn
  // start with them, later turns do not (TextPrefixTokens).
  std::vector<int32_t> text_prefix_tokens;
  // Things the loader noticed but accepted (e.g. unexpected tensors it ignored); log them.
  std::vector<std::string> warnings;
};

}  // namespace mamba
