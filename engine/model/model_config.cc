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

// A JSON number, or transformers 5's spelling of a non-finite float: {"__float__": "Infinity"}
// (also "-Infinity", "NaN"). False for anything else.
bool AsDouble(const Json& v, double* out) {
  if (v.is_number()) {
    *out = v.get<double>();
    return true;
  }
  if (v.is_object() && v.size() == 1 && v.contains("__float__") && v["__float__"].is_string()) {
    const std::string& text = v["__float__"].get_ref<const std::string&>();
    if (text == "Infinity" || text == "inf") {
      *out = std::numeric_limits<double>::infinity();
    } else if (text == "-Infinity" || text == "-inf") {
      *out = -std::numeric_limits<double>::infinity();
    } else if (text == "NaN" || text == "nan") {
      *out = std::numeric_limits<double>::quiet_NaN();
    } else {
      return false;
    }
    return true;
  }
  return false;
}

// Python's json module writes non-finite floats as bare Infinity, -Infinity and NaN, which JSON
// does not allow; configs saved by transformers 4 contain them ("time_step_limit": [0.0,
// Infinity]). Rewrites each one outside strings as the {"__float__": ...} object transformers 5
// writes, so that a standard parser reads the file and AsDouble the value.
std::string QuoteNonFiniteNumbers(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') {
      in_string = true;
      out += ch;
      continue;
    }
    bool replaced = false;
    for (std::string_view word : {std::string_view("-Infinity"), std::string_view("Infinity"),
                                  std::string_view("NaN")}) {
      if (text.substr(i, word.size()) == word) {
        out += absl::StrCat("{\"__float__\": \"", std::string(word), "\"}");
        i += word.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  return out;
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
    double v = 0;
    if (!AsDouble(*it, &v)) {
      return Error(key, absl::StrCat("must be a number, got ", TypeName(*it), " ", Shown(*it)));
    }
    if (!std::isfinite(v) || v < 0 || (positive && v == 0) ||
        v > std::numeric_limits<float>::max()) {
      return Error(key, absl::StrCat("is ", Shown(*it), "; allowed: a finite number ",
                                     positive ? "> 0" : ">= 0"));
    }
    *out = static_cast<float>(v);
    return absl::OkStatus();
  }

  // A [min, max] pair with 0 <= min <= max, max possibly infinite (time_step_limit, dt_limit).
  absl::Status Range(const char* key, float* lo, float* hi) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return absl::OkStatus();
    double a = 0, b = 0;
    if (!it->is_array() || it->size() != 2 || !AsDouble((*it)[0], &a) ||
        !AsDouble((*it)[1], &b)) {
      return Error(key, absl::StrCat("must be a pair of numbers [min, max], got ", Shown(*it)));
    }
    if (!(a >= 0) || !(b >= a) || !std::isfinite(a) || std::isnan(b) ||
        a > std::numeric_limits<float>::max()) {
      return Error(key, absl::StrCat("is ", Shown(*it),
                                     "; allowed: [min, max] with 0 <= min <= max (max may be "
                                     "Infinity)"));
    }
    *lo = static_cast<float>(a);
    *hi = b > std::numeric_limits<float>::max() ? std::numeric_limits<float>::infinity()
                                                : static_cast<float>(b);
    return absl::OkStatus();
  }

  // A string field that must have one of `allowed` values (when present and not null).
  absl::Status OneOf(const char* key, std::initializer_list<const char*> allowed,
                     std::string* out = nullptr) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return absl::OkStatus();
    if (it->is_string()) {
      for (const char* a : allowed) {
        if (it->get_ref<const std::string&>() == a) {
          if (out != nullptr) *out = a;
          return absl::OkStatus();
        }
      }
    }
    std::string list;
    for (const char* a : allowed) absl::StrAppend(&list, list.empty() ? "" : ", ", "\"", a, "\"");
    return Error(key, absl::StrCat("is ", Shown(*it), "; allowed: ", list));
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

absl::StatusOr<ModelFamily> ParseModelType(const FieldReader& r) {
  const Json* v = r.Find("model_type");
  if (v == nullptr || v->is_null()) return ModelFamily::kMamba1;
  if (!v->is_string()) {
    return r.Error("model_type", absl::StrCat("must be a string, got ", TypeName(*v)));
  }
  absl::StatusOr<ModelFamily> family = FamilyFromModelType(v->get<std::string>());
  if (!family.ok()) return r.Error("model_type", absl::StrCat("is ", Shown(*v), ": ",
                                                              family.status().message()));
  return family;
}

absl::Status CheckActivation(const FieldReader& r, const char* key) {
  // The mixers compute silu wherever the activation is set; any other would be another model.
  return r.OneOf(key, {"silu", "swish"});
}

// The fields every HF family shares (MambaConfig's, which FalconMambaConfig extends and
// Mamba2Config repeats), with the family's defaults already in *c.
absl::Status ParseHfCommon(const FieldReader& r, ModelConfig* c) {
  MAMBA_RETURN_IF_ERROR(r.Int("vocab_size", 1, kMaxVocab, &c->vocab_size));
  MAMBA_RETURN_IF_ERROR(r.Int("hidden_size", 1, kMaxDModel, &c->d_model));
  MAMBA_RETURN_IF_ERROR(r.Int("state_size", 1, kMaxDState, &c->d_state));
  MAMBA_RETURN_IF_ERROR(r.Int("num_hidden_layers", 1, kMaxLayers, &c->n_layer));
  MAMBA_RETURN_IF_ERROR(r.Float("layer_norm_epsilon", true, &c->layer_norm_epsilon));
  MAMBA_RETURN_IF_ERROR(r.TokenId("pad_token_id", &c->pad_token_id));
  MAMBA_RETURN_IF_ERROR(r.TokenId("bos_token_id", &c->bos_token_id));
  MAMBA_RETURN_IF_ERROR(r.TokenId("eos_token_id", &c->eos_token_id));
  MAMBA_RETURN_IF_ERROR(r.Int("expand", 1, 64, &c->expand));
  MAMBA_RETURN_IF_ERROR(r.Int("conv_kernel", 1, kMaxDConv, &c->d_conv));
  MAMBA_RETURN_IF_ERROR(r.Bool("use_bias", &c->use_bias));
  MAMBA_RETURN_IF_ERROR(r.Bool("use_conv_bias", &c->use_conv_bias));
  MAMBA_RETURN_IF_ERROR(r.Bool("residual_in_fp32", &c->residual_in_fp32));
  MAMBA_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c->tie_word_embeddings));
  MAMBA_RETURN_IF_ERROR(r.Float("time_step_min", true, &c->time_step_min));
  MAMBA_RETURN_IF_ERROR(r.Float("time_step_max", true, &c->time_step_max));
  MAMBA_RETURN_IF_ERROR(r.Float("time_step_floor", false, &c->time_step_floor));
  MAMBA_RETURN_IF_ERROR(CheckActivation(r, "hidden_act"));
  bool rank_auto = true;
  MAMBA_RETURN_IF_ERROR(ParseRank(r, "time_step_rank", &c->dt_rank, &rank_auto));
  if (rank_auto) c->dt_rank = CeilDiv(c->d_model, 16);
  return absl::OkStatus();
}

// HF MambaConfig and FalconMambaConfig: every field optional, defaults as in transformers'
// configuration_mamba.py and configuration_falcon_mamba.py (which differ only in mixer_rms_eps).
absl::StatusOr<ModelConfig> ParseHfMamba1Format(const FieldReader& r, ModelFamily family) {
  ModelConfig c;
  c.family = family;
  c.d_model = 768;
  c.n_layer = 32;
  MAMBA_RETURN_IF_ERROR(ParseHfCommon(r, &c));
  if (family == ModelFamily::kFalconMamba) {
    MAMBA_RETURN_IF_ERROR(r.Float("mixer_rms_eps", true, &c.mixer_rms_eps));
  }
  // intermediate_size: HF sets int(expand * hidden_size), but a stored intermediate_size
  // overrides it when the config is loaded back, so a given value wins (FalconMamba's published
  // configs carry an expand that disagrees with their intermediate_size).
  if (r.Has("intermediate_size")) {
    MAMBA_RETURN_IF_ERROR(r.Int("intermediate_size", 1, kMaxDInner, &c.d_inner));
  } else {
    MAMBA_RETURN_IF_ERROR(DeriveDInner(r, "expand", &c));
  }
  return c;
}

// HF Mamba2Config (configuration_mamba2.py): its defaults are Mamba-Codestral's shape.
absl::StatusOr<ModelConfig> ParseHfMamba2Format(const FieldReader& r) {
  ModelConfig c;
  c.family = ModelFamily::kMamba2;
  c.d_model = 4096;
  c.n_layer = 64;
  c.d_state = 128;
  c.vocab_size = 32768;
  c.pad_token_id = 1;
  c.bos_token_id = 0;
  c.eos_token_id = 2;
  c.tie_word_embeddings = false;
  c.n_heads = 128;
  c.head_dim = 64;
  c.n_groups = 8;
  MAMBA_RETURN_IF_ERROR(ParseHfCommon(r, &c));
  MAMBA_RETURN_IF_ERROR(r.Int("num_heads", 1, kMaxDInner, &c.n_heads));
  MAMBA_RETURN_IF_ERROR(r.Int("head_dim", 1, kMaxDInner, &c.head_dim));
  MAMBA_RETURN_IF_ERROR(r.Int("n_groups", 1, kMaxDInner, &c.n_groups));
  MAMBA_RETURN_IF_ERROR(r.Int("chunk_size", 1, 1 << 16, &c.chunk_size));
  MAMBA_RETURN_IF_ERROR(r.Range("time_step_limit", &c.time_step_limit_min,
                                &c.time_step_limit_max));
  MAMBA_RETURN_IF_ERROR(r.Bool("rms_norm", &c.gated_norm));
  if (!c.gated_norm) {
    // transformers' Mamba2Mixer applies its gated norm whatever rms_norm says, mamba_ssm skips it:
    // the two disagree on what such a checkpoint computes.
    return r.Error("rms_norm", "is false; only Mamba-2 models with the gated RMSNorm are supported");
  }
  if (const Json* v = r.Find("norm_before_gate"); v != nullptr && !v->is_null()) {
    bool before = false;
    MAMBA_RETURN_IF_ERROR(r.Bool("norm_before_gate", &before));
    if (before) return r.Error("norm_before_gate", "is true; allowed: false (norm after the gate)");
  }
  c.gated_norm_epsilon = c.layer_norm_epsilon;
  // transformers derives the SSM width from expand and reshapes it into num_heads x head_dim.
  MAMBA_RETURN_IF_ERROR(DeriveDInner(r, "expand", &c));
  if (c.d_ssm() != c.d_inner) {
    return r.Error("num_heads", absl::StrCat("is ", c.n_heads, " with head_dim ", c.head_dim, ": ",
                                             c.d_ssm(), " channels, but expand * hidden_size is ",
                                             c.d_inner, "; they must be equal"));
  }
  return c;
}

absl::StatusOr<ModelConfig> ParseHfFormat(const Json& j, const std::string& src) {
  FieldReader r(j, src);
  MAMBA_ASSIGN_OR_RETURN(ModelFamily family, ParseModelType(r));
  if (family == ModelFamily::kMamba2) return ParseHfMamba2Format(r);
  return ParseHfMamba1Format(r, family);
}

// ssm_cfg of a state-spaces Mamba2 layer (mamba_ssm.modules.mamba2.Mamba2's arguments).
absl::Status ParseStateSpacesMamba2(const FieldReader& s, ModelConfig* c) {
  c->family = ModelFamily::kMamba2;
  c->d_state = 128;
  c->head_dim = 64;
  c->n_groups = 1;
  int32_t d_ssm = 0;  // 0: d_inner
  MAMBA_RETURN_IF_ERROR(s.Int("d_state", 1, kMaxDState, &c->d_state));
  MAMBA_RETURN_IF_ERROR(s.Int("d_conv", 1, kMaxDConv, &c->d_conv));
  MAMBA_RETURN_IF_ERROR(s.Int("expand", 1, 64, &c->expand));
  MAMBA_RETURN_IF_ERROR(s.Int("headdim", 1, kMaxDInner, &c->head_dim));
  MAMBA_RETURN_IF_ERROR(s.Int("ngroups", 1, kMaxDInner, &c->n_groups));
  MAMBA_RETURN_IF_ERROR(s.Int("d_ssm", 1, kMaxDInner, &d_ssm));
  MAMBA_RETURN_IF_ERROR(s.Int("chunk_size", 1, 1 << 16, &c->chunk_size));
  MAMBA_RETURN_IF_ERROR(s.Bool("conv_bias", &c->use_conv_bias));
  MAMBA_RETURN_IF_ERROR(s.Bool("bias", &c->use_bias));
  MAMBA_RETURN_IF_ERROR(s.Bool("rmsnorm", &c->gated_norm));
  MAMBA_RETURN_IF_ERROR(s.Bool("D_has_hdim", &c->d_per_channel));
  MAMBA_RETURN_IF_ERROR(s.Float("dt_min", true, &c->time_step_min));
  MAMBA_RETURN_IF_ERROR(s.Float("dt_max", true, &c->time_step_max));
  MAMBA_RETURN_IF_ERROR(s.Float("dt_init_floor", false, &c->time_step_floor));
  MAMBA_RETURN_IF_ERROR(s.Range("dt_limit", &c->time_step_limit_min, &c->time_step_limit_max));
  bool before = false;
  MAMBA_RETURN_IF_ERROR(s.Bool("norm_before_gate", &before));
  if (before) return s.Error("norm_before_gate", "is true; allowed: false (norm after the gate)");
  MAMBA_RETURN_IF_ERROR(CheckActivation(s, "activation"));
  // mamba_ssm's RMSNormGated has a fixed epsilon.
  c->gated_norm_epsilon = 1e-5f;
  const int64_t d_inner = int64_t{c->expand} * c->d_model;
  if (d_ssm == 0) d_ssm = static_cast<int32_t>(std::min<int64_t>(d_inner, kMaxDInner));
  if (d_ssm % c->head_dim != 0) {
    return s.Error(s.Has("d_ssm") ? "d_ssm" : "headdim",
                   absl::StrCat("gives ", d_ssm, " SSM channels in heads of ", c->head_dim,
                                "; the channels must be a multiple of headdim"));
  }
  c->n_heads = d_ssm / c->head_dim;
  return absl::OkStatus();
}

// The original state-spaces/mamba config (mamba_ssm.models.config_mamba.MambaConfig).
absl::StatusOr<ModelConfig> ParseStateSpacesFormat(const Json& j, const std::string& src) {
  FieldReader r(j, src);
  MAMBA_ASSIGN_OR_RETURN(ModelFamily declared, ParseModelType(r));
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
    return r.Error("attn_layer_idx", "lists attention layers; only pure Mamba models are supported");
  }
  c.vocab_size = static_cast<int32_t>(
      std::min<int64_t>(int64_t{CeilDiv(c.vocab_size, pad_multiple)} * pad_multiple, kMaxVocab));
  c.expand = 2;
  c.d_state = 16;
  c.d_conv = 4;
  c.use_bias = false;
  c.use_conv_bias = true;
  bool rank_auto = true;
  std::string layer = "Mamba1";
  if (const Json* ssm = r.Find("ssm_cfg"); ssm != nullptr && !ssm->is_null()) {
    if (!ssm->is_object()) {
      return r.Error("ssm_cfg", absl::StrCat("must be an object, got ", TypeName(*ssm)));
    }
    FieldReader s(*ssm, src, "ssm_cfg.");
    MAMBA_RETURN_IF_ERROR(s.OneOf("layer", {"Mamba1", "Mamba2"}, &layer));
    if (layer == "Mamba2") {
      MAMBA_RETURN_IF_ERROR(ParseStateSpacesMamba2(s, &c));
    } else {
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
  }
  if (r.Has("model_type") && declared != c.family) {
    return r.Error("model_type", absl::StrCat("is \"", std::string(FamilyModelType(declared)),
                                              "\" but ssm_cfg.layer is \"", layer, "\""));
  }
  MAMBA_RETURN_IF_ERROR(DeriveDInner(r, "ssm_cfg.expand", &c));
  if (rank_auto) c.dt_rank = CeilDiv(c.d_model, 16);
  if (c.family == ModelFamily::kMamba2 && c.d_ssm() > c.d_inner) {
    return r.Error("ssm_cfg.d_ssm", absl::StrCat("is ", c.d_ssm(), "; allowed: at most expand * "
                                                 "d_model (", c.d_inner, ")"));
  }
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
  if (family != ModelFamily::kMamba2 && (dt_rank < 1 || dt_rank > d_inner)) {
    return bad("time_step_rank (dt_rank)",
               absl::StrCat("is ", dt_rank, "; allowed: 1..intermediate_size (", d_inner, ")"));
  }
  if (family == ModelFamily::kFalconMamba &&
      (!(mixer_rms_eps > 0) || !std::isfinite(mixer_rms_eps))) {
    return bad("mixer_rms_eps", absl::StrCat("is ", mixer_rms_eps, "; allowed: > 0"));
  }
  if (family == ModelFamily::kMamba2) {
    MAMBA_RETURN_IF_ERROR(range("head_dim", head_dim, 1, kMaxDInner));
    MAMBA_RETURN_IF_ERROR(range("num_heads", n_heads, 1, kMaxDInner));
    MAMBA_RETURN_IF_ERROR(range("n_groups", n_groups, 1, n_heads));
    if (d_ssm() > d_inner) {
      return bad("num_heads * head_dim", absl::StrCat("is ", d_ssm(), "; allowed: at most "
                                                      "intermediate_size (", d_inner, ")"));
    }
    if (n_heads % n_groups != 0) {
      return bad("n_groups", absl::StrCat("is ", n_groups, "; it must divide num_heads (",
                                          n_heads, ")"));
    }
    if (conv_dim() > 2 * kMaxDInner) {
      return bad("n_groups * state_size",
                 absl::StrCat("gives a conv width of ", conv_dim(), "; allowed: at most ",
                              2 * kMaxDInner));
    }
    MAMBA_RETURN_IF_ERROR(range("chunk_size", chunk_size, 1, 1 << 16));
    if (!(time_step_limit_min >= 0) || !(time_step_limit_max >= time_step_limit_min) ||
        !std::isfinite(time_step_limit_min)) {
      return bad("time_step_limit", absl::StrCat("is [", time_step_limit_min, ", ",
                                                 time_step_limit_max,
                                                 "]; allowed: 0 <= min <= max"));
    }
    if (!(gated_norm_epsilon > 0) || !std::isfinite(gated_norm_epsilon)) {
      return bad("gated norm epsilon", absl::StrCat("is ", gated_norm_epsilon, "; allowed: > 0"));
    }
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

int64_t ModelConfig::in_proj_dim() const {
  if (family == ModelFamily::kMamba2) {
    return 2 * int64_t{d_inner} + int64_t{2} * n_groups * d_state + n_heads;
  }
  return 2 * int64_t{d_inner};
}

int64_t ModelConfig::NumParameters() const {
  const int64_t D = d_model, E = d_inner, N = d_state, R = dt_rank, K = d_conv;
  int64_t layer = D + in_proj_dim() * D + D * E;  // norm, in_proj, out_proj
  if (use_bias) layer += in_proj_dim() + D;
  if (family == ModelFamily::kMamba2) {
    const int64_t H = n_heads, C = conv_dim();
    layer += C * K                          // conv1d
             + 2 * H                        // dt_bias, A_log
             + (d_per_channel ? d_ssm() : H)  // D
             + (gated_norm ? d_ssm() : 0);  // the gated norm's weight
    if (use_conv_bias) layer += C;
  } else {
    layer += E * K                // conv1d
             + (R + 2 * N) * E    // x_proj
             + E * R + E          // dt_proj + bias
             + E * N + E;         // A_log, D
    if (use_conv_bias) layer += E;
  }
  int64_t total = int64_t{vocab_size} * D + n_layer * layer + D;
  if (!tie_word_embeddings) total += int64_t{vocab_size} * D;
  return total;
}

std::string ModelConfig::Summary() const {
  const std::string tail = absl::StrFormat(
      "d_conv %d, vocab %d, %s%s%s", d_conv, vocab_size, tie_word_embeddings ? "tied" : "untied",
      use_bias ? ", bias" : "", use_conv_bias ? "" : ", no conv bias");
  if (family == ModelFamily::kMamba2) {
    return absl::StrFormat(
        "%s: %d layers x %d, %d heads of %d, d_state %d, %d groups%s, %s",
        std::string(FamilyName(family)), n_layer, d_model, n_heads, head_dim, d_state, n_groups,
        d_mlp() > 0 ? absl::StrCat(", MLP ", d_mlp()) : "", tail);
  }
  return absl::StrFormat("%s: %d layers x %d, d_inner %d, d_state %d, dt_rank %d, %s",
                         std::string(FamilyName(family)), n_layer, d_model, d_inner, d_state,
                         dt_rank, tail);
}

absl::StatusOr<ModelConfig> ParseHfConfig(std::string_view json_text, std::string_view source) {
  const std::string src(source);
  if (!common::JsonNestingWithin(json_text)) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": arrays or objects nested more than ",
                                                   common::kMaxJsonNesting, " levels deep"));
  }
  Json j;
  try {
    const std::string text = QuoteNonFiniteNumbers(json_text);
    j = Json::parse(text.begin(), text.end());
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

namespace {

// A float as JSON: the shortest decimal, or transformers 5's object for a non-finite value.
Json FloatJson(float f) {
  if (std::isinf(f)) return Json{{"__float__", f > 0 ? "Infinity" : "-Infinity"}};
  if (std::isnan(f)) return Json{{"__float__", "NaN"}};
  return ShortestDouble(f);
}

Json TokenJson(int32_t id) { return id < 0 ? Json(nullptr) : Json(id); }

// Whether HF's Mamba2Config can describe `c` (and transformers compute it).
bool HfCanExpressMamba2(const ModelConfig& c) {
  return c.d_mlp() == 0 && !c.d_per_channel && c.gated_norm &&
         c.gated_norm_epsilon == c.layer_norm_epsilon && c.d_inner == c.expand * c.d_model;
}

std::string StateSpacesMamba2Json(const ModelConfig& c) {
  Json ssm = {
      {"layer", "Mamba2"},
      {"d_state", c.d_state},
      {"d_conv", c.d_conv},
      {"expand", c.expand},
      {"headdim", c.head_dim},
      {"ngroups", c.n_groups},
      {"d_ssm", c.d_ssm()},
      {"chunk_size", c.chunk_size},
      {"rmsnorm", c.gated_norm},
      {"norm_before_gate", false},
      {"D_has_hdim", c.d_per_channel},
      {"bias", c.use_bias},
      {"conv_bias", c.use_conv_bias},
      {"dt_min", ShortestDouble(c.time_step_min)},
      {"dt_max", ShortestDouble(c.time_step_max)},
      {"dt_init_floor", ShortestDouble(c.time_step_floor)},
      {"dt_limit", Json::array({FloatJson(c.time_step_limit_min),
                                FloatJson(c.time_step_limit_max)})},
  };
  Json j = {
      {"d_model", c.d_model},
      {"d_intermediate", 0},
      {"n_layer", c.n_layer},
      {"vocab_size", c.vocab_size},
      {"pad_vocab_size_multiple", 1},
      {"ssm_cfg", ssm},
      {"rms_norm", true},
      {"norm_epsilon", ShortestDouble(c.layer_norm_epsilon)},
      {"residual_in_fp32", c.residual_in_fp32},
      {"tie_embeddings", c.tie_word_embeddings},
  };
  return j.dump(2) + "\n";
}

}  // namespace

std::string ToHfConfigJson(const ModelConfig& c) {
  if (c.family == ModelFamily::kMamba2 && !HfCanExpressMamba2(c)) return StateSpacesMamba2Json(c);
  Json j = {
      {"architectures", Json::array({std::string(FamilyArchitecture(c.family))})},
      {"model_type", std::string(FamilyModelType(c.family))},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.d_model},
      {"num_hidden_layers", c.n_layer},
      {"state_size", c.d_state},
      {"expand", c.expand},
      {"conv_kernel", c.d_conv},
      {"time_step_rank", c.dt_rank},
      {"use_bias", c.use_bias},
      {"use_conv_bias", c.use_conv_bias},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"residual_in_fp32", c.residual_in_fp32},
      {"layer_norm_epsilon", ShortestDouble(c.layer_norm_epsilon)},
      {"bos_token_id", TokenJson(c.bos_token_id)},
      {"eos_token_id", TokenJson(c.eos_token_id)},
      {"pad_token_id", TokenJson(c.pad_token_id)},
      {"hidden_act", "silu"},
      {"time_step_min", ShortestDouble(c.time_step_min)},
      {"time_step_max", ShortestDouble(c.time_step_max)},
      {"time_step_floor", ShortestDouble(c.time_step_floor)},
  };
  switch (c.family) {
    case ModelFamily::kMamba1:
      j["intermediate_size"] = c.d_inner;
      break;
    case ModelFamily::kFalconMamba:
      j["intermediate_size"] = c.d_inner;
      j["mixer_rms_eps"] = ShortestDouble(c.mixer_rms_eps);
      break;
    case ModelFamily::kMamba2:
      j["num_heads"] = c.n_heads;
      j["head_dim"] = c.head_dim;
      j["n_groups"] = c.n_groups;
      j["chunk_size"] = c.chunk_size;
      j["rms_norm"] = true;
      j["time_step_limit"] =
          Json::array({FloatJson(c.time_step_limit_min), FloatJson(c.time_step_limit_max)});
      break;
  }
  return j.dump(2) + "\n";
}

}  // namespace mamba::model
