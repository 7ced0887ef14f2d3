#include "engine/model/model_config.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_nesting.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace mamba::model {
namespace {

using Json = nlohmann::json;

// Upper bounds well above every published Mamba-1 model; they keep products such as
// vocab * d_model * 4 bytes far from int64 overflow and reject absurd files early.
constexpr int64_t kMaxDModel = 1 << 16;
constexpr int64_t kMaxDInner = 1 << 18;
constexpr int64_t kMaxLayers = 1 << 12;
constexpr int64_t kMaxDState = 1 << 12;
constexpr int64_t kMaxDConv = 64;
constexpr int64_t kMaxVocab = 1 << 22;

std::string TypeName(const Json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

std::string Shown(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// Typed access to one JSON object's fields, with errors that name the file and the field.
class FieldReader {
 public:
  FieldReader(const Json& object, std::string source, std::string prefix = "")
      : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool Has(const char* key) const {
    auto it = object_.find(key);
    return it != object_.end() && !it->is_null();
  }
  const Json* Find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  absl::Status Error(const char* key, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", prefix_, key, "' ", what));
  }

  // An integer in [min, max]; `def` when absent. Floats with an integral value (768.0) are
  // accepted, since some writers emit them.
  absl::Status Int(const char* key, int64_t min, int64_t max, int32_t* out) const {
    auto it = object_.find(key);
    if (it == object_.end()) return absl::OkStatus();
    const Json& v = *it;
    int64_t value = 0;
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}) {
        return Error(key,
                     absl::StrCat("is out of range: ", Shown(v), "; allowed: ", min, "..", max));
      }
      value = v.get<int64_t>();
    } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
               std::floor(v.get<double>()) == v.get<double>() &&
               std::fabs(v.get<double>()) < 9e15) {
      value = static_cast<int64_t>(v.get<double>());
    } else {
      return Error(key, absl::StrCat("must be an integer, got ", TypeName(v), " ", Shown(v)));
    }
    if (value < min || value > max) {
      return Error(key, absl::StrCat("is ", value, "; allowed: ", min, "..", max));
    }
    *out = static_cast<int32_t>(value);
    return absl::OkStatus();
  }

  // A token id: an integer in [0, kMaxVocab) or null (stored as -1). A list (some configs give
  // several eos ids) takes its first element.
  absl::Status TokenId(const char* key, int32_t* out) const {
    auto it = object_.find(key);
    if (it == object_.end()) return absl::OkStatus();
    if (it->is_null()) {
      *out = -1;
      return absl::OkStatus();
    }
    if (it->is_array()) {
      if (it->empty()) {
        *out = -1;
        return absl::OkStatus();
      }
      Json first = Json::object({{key, (*it)[0]}});
      return FieldReader(first, source_, prefix_).TokenId(key, out);
    }
    return Int(key, 0, kMaxVocab - 1, out);
  }

  absl::Status Bool(const char* key, bool* out) const {
    auto it = object_.find(key);
    if (it == object_.end()) return absl::OkStatus();
    if (!it->is_boolean()) {
      return Error(key,
                   absl::StrCat("must be true or false, got ", TypeName(*it), " ", Shown(*it)));
    }
    *out = it->get<bool>();
    return absl::OkStatus();
  }

  // A finite number > 0 (when `positive`) or >= 0.
  absl::Status Float(const char* key, bool positive, float* out) const {
    auto it = object_.find(key);
    if (it == object_.end()) return absl::OkStatus();
    if (!it->is_number()) {
      return Error(key, absl::StrCat("must be a number, got ", TypeName(*it), " ", Shown(*it)));
    }
    const double v = it->get<double>();
    if (!std::isfinite(v) || v < 0 || (positive && v == 0) ||
        v > std::numeric_limits<float>::max()) {
      return Error(key, absl::StrCat("is ", Shown(*it), "; allowed: a finite number ",
                                     positive ? "> 0" : ">= 0"));
    }
    *out = static_cast<float>(v);
    return absl::OkStatus();
  }

 private:
  const Json& object_;
  std::string source_;
  std::string prefix_;
};

int32_t CeilDiv(int64_t a, int64_t b) { return static_cast<int32_t>((a + b - 1) / b); }

// time_step_rank / dt_rank: "auto" or a positive integer. Sets *out only when given as a number;
// *is_auto tells the caller to derive it.
absl::Status ParseRank(const FieldReader& r, const char* key, int32_t* out, bool* is_auto) {
  const Json* v = r.Find(key);
  *is_auto = true;
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (v->is_string()) {
    if (v->get<std::string>() == "auto") return absl::OkStatus();
    return r.Error(key, absl::StrCat("is ", Shown(*v), "; allowed: \"auto\" or an integer >= 1"));
  }
  *is_auto = false;
  return r.Int(key, 1, kMaxDInner, out);
}

// d_inner = expand * d_model, bounded.
absl::Status DeriveDInner(const FieldReader& r, const char* expand_key, ModelConfig* c) {
  const int64_t d_inner = int64_t{c->expand} * c->d_model;
  if (d_inner > kMaxDInner) {
    return r.Error(expand_key, absl::StrCat("times the model width gives an intermediate size of ",
                                            d_inner, "; allowed: at most ", kMaxDInner));
  }
  c->d_inner = static_cast<int32_t>(d_inner);
  return absl::OkStatus();
}

absl::Status ParseModelType(const FieldReader& r) {
  const Json* v = r.Find("model_type");
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (!v->is_string() || v->get<std::string>() != "mamba") {
    return r.Error("model_type",
                   absl::StrCat("is ", Shown(*v), "; this server runs Mamba-1 models (\"mamba\")"));
  }
  return absl::OkStatus();
}

// HF MambaConfig: every field optional, defaults as in transformers' configuration_mamba.py.
absl::StatusOr<ModelConfig> ParseHfFormat(const Json& j, const std::string& src) {
  FieldReader r(j, src);
  MAMBA_RETURN_IF_ERROR(ParseModelType(r));
  ModelConfig c;
  c.d_model = 768;
  c.n_layer = 32;
  MAMBA_RETURN_IF_ERROR(r.Int("vocab_size", 1, kMaxVocab, &c.vocab_size));
  MAMBA_RETURN_IF_ERROR(r.Int("hidden_size", 1, kMaxDModel, &c.d_model));
  MAMBA_RETURN_IF_ERROR(r.Int("state_size", 1, kMaxDState, &c.d_state));
  MAMBA_RETURN_IF_ERROR(r.Int("num_hidden_layers", 1, kMaxLayers, &c.n_layer));
  MAMBA_RETURN_IF_ERROR(r.Float("layer_norm_epsilon", true, &c.layer_norm_epsilon));
  MAMBA_RETURN_IF_ERROR(r.TokenId("pad_token_id", &c.pad_token_id));
  MAMBA_RETURN_IF_ERROR(r.TokenId("bos_token_id", &c.bos_token_id));
  MAMBA_RETURN_IF_ERROR(r.TokenId("eos_token_id", &c.eos_token_id));
  MAMBA_RETURN_IF_ERROR(r.Int("expand", 1, 64, &c.expand));
  MAMBA_RETURN_IF_ERROR(r.Int("conv_kernel", 1, kMaxDConv, &c.d_conv));
  MAMBA_RETURN_IF_ERROR(r.Bool("use_bias", &c.use_bias));
  MAMBA_RETURN_IF_ERROR(r.Bool("use_conv_bias", &c.use_conv_bias));
  MAMBA_RETURN_IF_ERROR(r.Bool("residual_in_fp32", &c.residual_in_fp32));
  MAMBA_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  MAMBA_RETURN_IF_ERROR(r.Float("time_step_min", true, &c.time_step_min));
  MAMBA_RETURN_IF_ERROR(r.Float("time_step_max", true, &c.time_step_max));
  MAMBA_RETURN_IF_ERROR(r.Float("time_step_floor", false, &c.time_step_floor));
  // HF's MambaMixer computes silu wherever hidden_act is set; any other activation would be a
  // different model.
  if (const Json* act = r.Find("hidden_act"); act != nullptr && !act->is_null()) {
    if (!act->is_string() ||
        (act->get<std::string>() != "silu" && act->get<std::string>() != "swish")) {
      return r.Error("hidden_act", absl::StrCat("is ", Shown(*act), "; allowed: \"silu\""));
    }
  }
  // intermediate_size: HF sets int(expand * hidden_size), but a stored intermediate_size
  // overrides it when the config is loaded back, so a given value wins.
  if (r.Has("intermediate_size")) {
    MAMBA_RETURN_IF_ERROR(r.Int("intermediate_size", 1, kMaxDInner, &c.d_inner));
  } else {
    MAMBA_RETURN_IF_ERROR(DeriveDInner(r, "expand", &c));
  }
  bool rank_auto = true;
  MAMBA_RETURN_IF_ERROR(ParseRank(r, "time_step_rank", &c.dt_rank, &rank_auto));
  if (rank_auto) c.dt_rank = CeilDiv(c.d_model, 16);
  return c;
}

// The original state-spaces/mamba config (mamba_ssm.models.config_mamba.MambaConfig).
absl::StatusOr<ModelConfig> ParseStateSpacesFormat(const Json& j, const std::string& src) {
  FieldReader r(j, src);
  MAMBA_RETURN_IF_ERROR(ParseModelType(r));
  ModelConfig c;
  c.d_model = 2560;
  c.n_layer = 64;
  c.vocab_size = 50277;
  int32_t pad_multiple = 8;
  MAMBA_RETURN_IF_ERROR(r.Int("d_model", 1, kMaxDModel, &c.d_model));
  MAMBA_RETURN_IF_ERROR(r.Int("n_layer", 1, kMaxLayers, &c.n_layer));
  MAMBA_RETURN_IF_ERROR(r.Int("vocab_size", 1, kMaxVocab, &c.vocab_size));
  MAMBA_RETURN_IF_ERROR(r.Int("pad_vocab_size_multiple", 1, 1 << 16, &pad_multiple));
  MAMBA_RETURN_IF_ERROR(r.Bool("residual_in_fp32", &c.residual_in_fp32));
  MAMBA_RETURN_IF_ERROR(r.Bool("tie_embeddings", &c.tie_word_embeddings));
  MAMBA_RETURN_IF_ERROR(r.Float("norm_epsilon", true, &c.layer_norm_epsilon));
  bool rms_norm = true;
  MAMBA_RETURN_IF_ERROR(r.Bool("rms_norm", &rms_norm));
  if (!rms_norm) return r.Error("rms_norm", "is false; only RMSNorm models are supported");
  int32_t d_intermediate = 0;
  MAMBA_RETURN_IF_ERROR(r.Int("d_intermediate", 0, 0, &d_intermediate));
  if (const Json* attn = r.Find("attn_layer_idx");
      attn != nullptr && !attn->is_null() && !(attn->is_array() && attn->empty())) {
    return r.Error("attn_layer_idx",
                   "lists attention layers; only pure Mamba-1 models are supported");
  }
  c.vocab_size = static_cast<int32_t>(
      std::min<int64_t>(int64_t{CeilDiv(c.vocab_size, pad_multiple)} * pad_multiple, kMaxVocab));
  c.expand = 2;
  c.d_state = 16;
  c.d_conv = 4;
  c.use_bias = false;
  c.use_conv_bias = true;
  bool rank_auto = true;
  if (const Json* ssm = r.Find("ssm_cfg"); ssm != nullptr && !ssm->is_null()) {
    if (!ssm->is_object()) {
      return r.Error("ssm_cfg", absl::StrCat("must be an object, got ", TypeName(*ssm)));
    }
    FieldReader s(*ssm, src, "ssm_cfg.");
    if (const Json* layer = s.Find("layer");
        layer != nullptr && !(layer->is_string() && layer->get<std::string>() == "Mamba1")) {
      return s.Error("layer", absl::StrCat("is ", Shown(*layer), "; allowed: \"Mamba1\""));
    }
    MAMBA_RETURN_IF_ERROR(s.Int("d_state", 1, kMaxDState, &c.d_state));
    MAMBA_RETURN_IF_ERROR(s.Int("d_conv", 1, kMaxDConv, &c.d_conv));
    MAMBA_RETURN_IF_ERROR(s.Int("expand", 1, 64, &c.expand));
    MAMBA_RETURN_IF_ERROR(s.Bool("conv_bias", &c.use_conv_bias));
    MAMBA_RETURN_IF_ERROR(s.Bool("bias", &c.use_bias));
    MAMBA_RETURN_IF_ERROR(s.Float("dt_min", true, &c.time_step_min));
    MAMBA_RETURN_IF_ERROR(s.Float("dt_max", true, &c.time_step_max));
    MAMBA_RETURN_IF_ERROR(s.Float("dt_init_floor", false, &c.time_step_floor));
    MAMBA_RETURN_IF_ERROR(ParseRank(s, "dt_rank", &c.dt_rank, &rank_auto));
  }
  MAMBA_RETURN_IF_ERROR(DeriveDInner(r, "ssm_cfg.expand", &c));
  if (rank_auto) c.dt_rank = CeilDiv(c.d_model, 16);
  return c;
}

// Shortest decimal that reads back as the same float, so that the JSON says 1e-05, not
// 9.999999747378752e-06.
double ShortestDouble(float f) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, f);
  double d = 0;
  std::from_chars(buf, res.ptr, d);
  return d;
}

}  // namespace

absl::Status ModelConfig::Validate() const {
  auto bad = [](const char* field, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("model config: ", field, " ", what));
  };
  auto range = [&](const char* field, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) return bad(field, absl::StrCat("is ", v, "; allowed: ", lo, "..", hi));
    return absl::OkStatus();
  };
  MAMBA_RETURN_IF_ERROR(range("hidden_size (d_model)", d_model, 1, kMaxDModel));
  MAMBA_RETURN_IF_ERROR(range("num_hidden_layers (n_layer)", n_layer, 1, kMaxLayers));
  MAMBA_RETURN_IF_ERROR(range("state_size (d_state)", d_state, 1, kMaxDState));
  MAMBA_RETURN_IF_ERROR(range("expand", expand, 1, 64));
  MAMBA_RETURN_IF_ERROR(range("intermediate_size (d_inner)", d_inner, 1, kMaxDInner));
  MAMBA_RETURN_IF_ERROR(range("conv_kernel (d_conv)", d_conv, 1, kMaxDConv));
  MAMBA_RETURN_IF_ERROR(range("vocab_size", vocab_size, 1, kMaxVocab));
  if (dt_rank < 1 || dt_rank > d_inner) {
    return bad("time_step_rank (dt_rank)",
               absl::StrCat("is ", dt_rank, "; allowed: 1..intermediate_size (", d_inner, ")"));
  }
  for (auto [name, id] : {std::pair{"bos_token_id", bos_token_id},
                          {"eos_token_id", eos_token_id},
                          {"pad_token_id", pad_token_id}}) {
    if (id < -1 || id >= vocab_size) {
      return bad(name, absl::StrCat("is ", id, "; allowed: 0..vocab_size-1 (", vocab_size - 1,
                                    ") or null"));
    }
  }
  if (!(layer_norm_epsilon > 0) || !std::isfinite(layer_norm_epsilon)) {
    return bad("layer_norm_epsilon", absl::StrCat("is ", layer_norm_epsilon, "; allowed: > 0"));
  }
  if (!(time_step_min > 0) || !(time_step_max >= time_step_min) || !std::isfinite(time_step_max)) {
    return bad("time_step_min/time_step_max",
               absl::StrCat("are ", time_step_min, "/", time_step_max,
                            "; allowed: 0 < time_step_min <= time_step_max"));
  }
  if (!(time_step_floor >= 0) || !std::isfinite(time_step_floor)) {
    return bad("time_step_floor", absl::StrCat("is ", time_step_floor, "; allowed: >= 0"));
  }
  return absl::OkStatus();
}

int64_t ModelConfig::NumParameters() const {
  const int64_t D = d_model, E = d_inner, N = d_state, R = dt_rank, K = d_conv;
  int64_t layer = D                  // norm
                  + 2 * E * D        // in_proj
                  + E * K            // conv1d
                  + (R + 2 * N) * E  // x_proj
                  + E * R + E        // dt_proj + bias
                  + E * N + E        // A_log, D
                  + D * E;           // out_proj
  if (use_bias) layer += 2 * E + D;
  if (use_conv_bias) layer += E;
  int64_t total = int64_t{vocab_size} * D + n_layer * layer + D;
  if (!tie_word_embeddings) total += int64_t{vocab_size} * D;
  return total;
}

std::string ModelConfig::Summary() const {
  return absl::StrFormat(
      "%d layers x %d, d_inner %d, d_state %d, dt_rank %d, d_conv %d, vocab %d, %s%s%s", n_layer,
      d_model, d_inner, d_state, dt_rank, d_conv, vocab_size,
      tie_word_embeddings ? "tied" : "untied", use_bias ? ", bias" : "",
      use_conv_bias ? "" : ", no conv bias");
}

absl::StatusOr<ModelConfig> ParseHfConfig(std::string_view json_text, std::string_view source) {
  const std::string src(source);
  if (!common::JsonNestingWithin(json_text)) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": arrays or objects nested more than ",
                                                   common::kMaxJsonNesting, " levels deep"));
  }
  Json j;
  try {
    j = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(src, ": expected a JSON object, got ", TypeName(j)));
  }
  absl::StatusOr<ModelConfig> config;
  const bool state_spaces = j.contains("d_model") && !j.contains("hidden_size");
  try {
    config = state_spaces ? ParseStateSpacesFormat(j, src) : ParseHfFormat(j, src);
  } catch (const Json::exception& e) {  // defensive: the readers check types before get<>()
    return absl::InvalidArgumentError(absl::StrCat(src, ": ", e.what()));
  }
  if (!config.ok()) return config.status();
  if (absl::Status s = config->Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": ", s.message()));
  }
  return config;
}

absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open the model config (config.json)"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ParseHfConfig(text.str(), path);
}

std::string ToHfConfigJson(const ModelConfig& c) {
  auto token = [](int32_t id) { return id < 0 ? Json(nullptr) : Json(id); };
  Json j = {
      {"architectures", Json::array({"MambaForCausalLM"})},
      {"model_type", "mamba"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.d_model},
      {"num_hidden_layers", c.n_layer},
      {"state_size", c.d_state},
      {"expand", c.expand},
      {"intermediate_size", c.d_inner},
      {"conv_kernel", c.d_conv},
      {"time_step_rank", c.dt_rank},
      {"use_bias", c.use_bias},
      {"use_conv_bias", c.use_conv_bias},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"residual_in_fp32", c.residual_in_fp32},
      {"layer_norm_epsilon", ShortestDouble(c.layer_norm_epsilon)},
      {"bos_token_id", token(c.bos_token_id)},
      {"eos_token_id", token(c.eos_token_id)},
      {"pad_token_id", token(c.pad_token_id)},
      {"hidden_act", "silu"},
      {"time_step_min", ShortestDouble(c.time_step_min)},
      {"time_step_max", ShortestDouble(c.time_step_max)},
      {"time_step_floor", ShortestDouble(c.time_step_floor)},
  };
  return j.dump(2) + "\n";
}

}  // namespace mamba::model
