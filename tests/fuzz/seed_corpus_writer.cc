// Writes the seed corpora under tests/fuzz/corpus/ from real inputs: the golden checkpoints'
// safetensors headers and config.json files, the tokenizer fixtures (cut down to a few hundred
// tokens, so that seeds stay small), the fixtures' test strings, serialized valid requests, and
// exported sessions. Each seed carries the leading mode byte its fuzzer expects.
//
//   seed_corpus_writer OUT_DIR      (OUT_DIR is usually tests/fuzz/corpus)
//
// Seeds are named by a hash of their content, so rerunning adds nothing twice.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/model/model_loader.h"
#include "engine/model/safetensors.h"
#include "engine/sessions/session_codec.h"
#include "engine/tokenizer/tokenizer.h"
#include "mambaserve/v1/generation.pb.h"
#include "mambaserve/v1/models.pb.h"
#include "mambaserve/v1/sessions.pb.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_session_keys.h"

namespace {

namespace fs = std::filesystem;
namespace v1 = ::mambaserve::v1;
using Json = nlohmann::ordered_json;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  FUZZ_CHECK(in.good(), "cannot read %s", path.c_str());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// FNV-1a, for seed file names.
uint64_t Fnv1a(const std::string& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

class CorpusWriter {
 public:
  explicit CorpusWriter(fs::path root) : root_(std::move(root)) {}

  void Add(const std::string& target, const std::string& bytes) {
    const fs::path dir = root_ / target;
    fs::create_directories(dir);
    char name[17];
    std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(Fnv1a(bytes)));
    const fs::path path = dir / (std::string("seed-") + name);
    if (fs::exists(path)) return;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    FUZZ_CHECK(out.good(), "cannot write %s", path.c_str());
    ++written_;
  }
  int written() const { return written_; }

 private:
  fs::path root_;
  int written_ = 0;
};

std::string LE64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// `before` + `depth` nested arrays + `after`: deeper than the parsers accept (regression: such
// JSON used to overflow the stack when copied or printed).
std::string Nested(const std::string& before, int depth, const std::string& after) {
  return before + std::string(static_cast<size_t>(depth), '[') +
         std::string(static_cast<size_t>(depth), ']') + after;
}

// safetensors: each golden file's header with its real data size (structured mode), and small
// whole files (raw mode).
void SafetensorsSeeds(const fs::path& data, CorpusWriter* out) {
  for (const auto& entry : fs::recursive_directory_iterator(data / "golden")) {
    if (entry.path().extension() != ".safetensors") continue;
    const std::string file = ReadFile(entry.path());
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<uint8_t>(file[i]);
    const std::string header = file.substr(8, len);
    out->Add("safetensors", std::string(1, '\0') + LE64(file.size() - 8 - len) + header);
  }
  const fs::path tmp = fs::temp_directory_path() / "mamba_seed.safetensors";
  const float f32[3] = {1.0f, -2.0f, 0.5f};
  const uint16_t b16[4] = {0x3f80, 0xc000, 0x0000, 0x7fc0};
  const std::vector<std::vector<mamba::model::NamedTensor>> files = {
      {{"a", {mamba::model::DType::kF32, {3}, f32}}},
      {{"w", {mamba::model::DType::kBF16, {2, 2}, b16}},
       {"b", {mamba::model::DType::kF32, {1}, f32}}},
      {{"h", {mamba::model::DType::kF16, {4}, b16}},
       {"empty", {mamba::model::DType::kF32, {0, 5}, nullptr}}},
  };
  for (const auto& tensors : files) {
    FUZZ_CHECK(mamba::model::WriteSafetensors(tmp, tensors, {{"format", "pt"}}).ok(), "write");
    out->Add("safetensors", std::string(1, '\1') + ReadFile(tmp));
  }
  fs::remove(tmp);
  out->Add("safetensors", std::string(1, '\0') + LE64(0) + Nested(R"({"x": )", 100, "}"));
}

void ModelConfigSeeds(const fs::path& data, CorpusWriter* out) {
  for (const auto& entry : fs::recursive_directory_iterator(data / "golden")) {
    if (entry.path().filename() == "config.json") out->Add("model_config", ReadFile(entry.path()));
  }
  out->Add("model_config", mamba::model::ToHfConfigJson(mamba::model::ModelConfig{}));
  // The original state-spaces layout, and the fields that take unusual forms.
  out->Add("model_config",
           R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"d_state": 16,
"d_conv": 4, "expand": 2, "dt_rank": "auto", "layer": "Mamba1"}, "rms_norm": true,
"residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8,
"tie_embeddings": true, "attn_layer_idx": [], "d_intermediate": 0})");
  out->Add("model_config",
           R"({"model_type": "mamba", "hidden_size": 64.0, "num_hidden_layers": 2,
"vocab_size": 100, "time_step_rank": "auto", "eos_token_id": [0, 1], "pad_token_id": null,
"intermediate_size": 96, "hidden_act": "swish", "layer_norm_epsilon": 1e-6})");
  out->Add("model_config", Nested(R"({"eos_token_id": )", 100, "}"));
  // Every family: the synthetic models' canonical configs, and the forms real files take.
  for (const std::string& name : mamba::model::SyntheticModelNames()) {
    out->Add("model_config", mamba::model::ToHfConfigJson(*mamba::model::SyntheticConfig(name)));
  }
  // Mamba-Codestral as transformers 4 wrote it (a bare Infinity), and transformers 5's form.
  out->Add("model_config",
           R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 8, "head_dim": 16,
"n_groups": 2, "state_size": 16, "chunk_size": 32, "time_step_limit": [0.0, Infinity],
"rms_norm": true, "norm_before_gate": false, "tie_word_embeddings": false, "vocab_size": 300})");
  out->Add("model_config",
           R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 4, "head_dim": 32,
"time_step_limit": [0.0, {"__float__": "Infinity"}], "layer_norm_epsilon": -Infinity})");
  // state-spaces Mamba-2, with the fields HF cannot say.
  out->Add("model_config",
           R"({"d_model": 64, "n_layer": 2, "vocab_size": 298, "pad_vocab_size_multiple": 4,
"ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": 2, "d_ssm": 96,
"D_has_hdim": true, "rmsnorm": false, "dt_limit": [0.0, 0.3], "chunk_size": 32},
"rms_norm": true, "tie_embeddings": true})");
  // FalconMamba with its disagreeing expand; an inconsistent Mamba-2 and a bad model type.
  out->Add("model_config",
           R"({"model_type": "falcon_mamba", "hidden_size": 64, "expand": 16,
"intermediate_size": 128, "mixer_rms_eps": 1e-6, "time_step_rank": 8, "vocab_size": 300})");
  out->Add("model_config",
           R"({"model_type": "mamba2", "hidden_size": 64, "num_heads": 3, "head_dim": 16,
"n_groups": 5, "time_step_limit": [NaN, 1]})");
  out->Add("model_config", R"({"model_type": "mamba3", "ssm_cfg": {"layer": "Mamba3"}})");
}

// A fixture cut down to the byte alphabet plus the first merges, keeping every component.
std::string ShrinkTokenizer(const std::string& text, size_t keep_tokens) {
  Json doc = Json::parse(text);
  Json& model = doc["model"];
  Json vocab = Json::object();
  std::set<std::string> kept;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (it.value().get<size_t>() < keep_tokens) {
      vocab[it.key()] = it.value();
      kept.insert(it.key());
    }
  }
  Json merges = Json::array();
  for (const Json& m : model["merges"]) {
    std::string a, b;
    if (m.is_array()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      a = s.substr(0, space);
      b = s.substr(space + 1);
    }
    if (kept.count(a) && kept.count(b) && kept.count(a + b)) merges.push_back(m);
  }
  model["vocab"] = vocab;
  model["merges"] = merges;
  Json added = Json::array();
  for (Json token : doc["added_tokens"]) {
    if (token["id"].get<size_t>() >= keep_tokens && !vocab.contains(token["content"])) {
      token["id"] = keep_tokens + added.size();
    }
    added.push_back(token);
  }
  doc["added_tokens"] = added;
  return doc.dump();
}

void TokenizerSeeds(const fs::path& data, CorpusWriter* out) {
  for (const auto& entry : fs::directory_iterator(data / "tokenizer")) {
    const fs::path json = entry.path() / "tokenizer.json";
    if (!fs::exists(json)) continue;
    const std::string shrunk = ShrinkTokenizer(ReadFile(json), 300);
    FUZZ_CHECK(mamba::tokenizer::ParseTokenizerJson(shrunk, "seed").ok(), "shrunk %s does not load",
               json.c_str());
    out->Add("tokenizer_json", shrunk);
  }
  out->Add("tokenizer_json",
           R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
"decoder": {"type": "ByteLevel"}, "added_tokens": []})");
  out->Add("tokenizer_json", Nested(R"({"model": )", 100, "}"));

  // Encoder seeds: the fixture test strings, once for each tokenizer the fuzzer holds.
  const Json cases = Json::parse(ReadFile(data / "tokenizer/small/cases.json"));
  std::vector<std::string> texts;
  for (const Json& c : cases["cases"]) {
    if (texts.size() >= 24) break;
    if (c.contains("text") && c["text"].get<std::string>().size() < 400) {
      texts.push_back(c["text"].get<std::string>());
    }
  }
  texts.push_back("caf\xc3\xa9\xff\xfe broken \xe2\x82 utf-8 \xed\xa0\x80 surrogate");
  texts.push_back("<|endoftext|>Hello<|padding|>   world\n\n12345 <mask> [word]");
  for (size_t i = 0; i < texts.size(); ++i) {
    const char selector =
        static_cast<char>(i % 16 | (i % 3 == 0 ? 0x40 : 0) | (i % 5 == 0 ? 0x80 : 0));
    out->Add("tokenizer_encode", std::string(1, selector) + texts[i]);
  }
}

void RequestSeeds(CorpusWriter* out) {
  auto add = [&](int kind, const std::string& metadata, const google::protobuf::Message& m) {
    std::string bytes(1, static_cast<char>(kind));
    bytes += static_cast<char>(metadata.size());
    bytes += metadata;
    bytes += m.SerializeAsString();
    out->Add("request_validation", bytes);
  };
  const std::string id = "0123456789abcdef0123456789abcdef";
  v1::GenerateRequest g;
  g.set_text("Hello, world");
  add(0, "", g);
  g.set_session_id(id);
  g.set_request_id("req-1");
  g.mutable_sampling()->set_temperature(0.7f);
  g.mutable_sampling()->set_top_k(40);
  g.mutable_sampling()->set_top_p(0.9f);
  g.mutable_sampling()->set_min_p(0.05f);
  g.mutable_sampling()->set_repetition_penalty(1.1f);
  g.mutable_sampling()->set_seed(42);
  g.mutable_stopping()->set_max_tokens(32);
  g.mutable_stopping()->add_stop("\n\n");
  g.mutable_stopping()->add_stop_token_ids(0);
  g.mutable_stopping()->set_ignore_eos(true);
  g.set_logprobs(3);
  add(0, "", g);
  v1::GenerateRequest ids;
  for (int i : {10, 20, 30, 1000}) ids.mutable_token_ids()->add_ids(i);
  add(0, "", ids);

  v1::CreateSessionRequest c;
  c.set_text("A conversation starts here.");
  c.set_ttl_seconds(60);
  add(1, "", c);
  c.set_session_id(id);
  add(1, id, c);
  v1::CreateSessionRequest c_ids;
  c_ids.mutable_token_ids()->add_ids(5);
  add(1, id, c_ids);

  v1::DetokenizeRequest d;
  for (int i : {0, 100, 500, 1023}) d.add_token_ids(i);
  d.set_skip_special_tokens(true);
  add(2, "", d);

  mamba::sessions::SessionSnapshot s;
  s.model_identity = "fuzz-model";
  s.layout = {/*n_layer=*/2, /*conv_channels=*/32, /*conv_width=*/4, /*ssm_channels=*/32,
              /*ssm_state=*/4};
  s.tokens = 12;
  s.pending = {7};
  s.payload.assign(2 * 32 * (3 + 4) * 4, '\0');
  v1::ImportSessionRequest imp;
  imp.set_state(mamba::sessions::EncodeSession(s, mamba::fuzz::FuzzSessionKeys()));
  imp.set_session_id(id);
  add(3, "", imp);

  v1::ListSessionsRequest list;
  list.set_page_size(25);
  list.set_page_token("abc");
  add(4, "", list);
}

void SessionSeeds(CorpusWriter* out) {
  const std::pair<mamba::model::DType, int> shapes[] = {{mamba::model::DType::kF32, 1},
                                                        {mamba::model::DType::kBF16, 2},
                                                        {mamba::model::DType::kF16, 3}};
  for (const auto& [dtype, layers] : shapes) {
    mamba::sessions::SessionSnapshot s;
    s.model_identity = "sha256:0123abcd/config";
    s.state_dtype = dtype;
    s.layout = {/*n_layer=*/layers, /*conv_channels=*/8, /*conv_width=*/4, /*ssm_channels=*/8,
                /*ssm_state=*/2};
    s.tokens = 40 * layers;
    s.pending = std::vector<int32_t>(static_cast<size_t>(layers), 3);
    s.payload.resize(static_cast<size_t>(layers) * 8 * (3 + 2) * mamba::model::DTypeSize(dtype));
    for (size_t i = 0; i < s.payload.size(); ++i) s.payload[i] = static_cast<char>(i * 7);
    const std::string bytes = mamba::sessions::EncodeSession(s, mamba::fuzz::FuzzSessionKeys());
    out->Add("session_codec", std::string(1, '\0') + bytes);
    out->Add("session_codec", std::string(1, '\1') + bytes.substr(0, bytes.size() - 32));
  }
  // A Mamba-2 state: conv and SSM states over different channels, the family byte set.
  mamba::sessions::SessionSnapshot s;
  s.model_identity = "mamba2-identity";
  s.family = mamba::model::ModelFamily::kMamba2;
  s.layout = {/*n_layer=*/2, /*conv_channels=*/12, /*conv_width=*/4, /*ssm_channels=*/8,
              /*ssm_state=*/2};
  s.tokens = 9;
  s.payload.resize(static_cast<size_t>(s.layout.elements()) * 4);
  for (size_t i = 0; i < s.payload.size(); ++i) s.payload[i] = static_cast<char>(i * 5);
  out->Add("session_codec",
           std::string(1, '\0') + mamba::sessions::EncodeSession(s, mamba::fuzz::FuzzSessionKeys()));
}

// Stop strings (a count, then each with a length byte; at most 8 bytes) and the text.
void StopMatcherSeeds(CorpusWriter* out) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"\n\n", "User:"}, "Hello there.\nHow are you?\n\nUser: fine"},
      {{"abab"}, "abaabababab and more"},
      {{"</s>", "<|eot|>", "\xe6\x97\xa5"}, "text \xe6\x97\xa5\xe6\x9c\xac <|eo</s>"},
      {{}, "no stop strings at all"},
  };
  for (const auto& [stops, text] : cases) {
    std::string bytes(1, static_cast<char>(stops.size()));
    for (const std::string& stop : stops) bytes += static_cast<char>(stop.size()) + stop;
    out->Add("stop_matcher", bytes + text);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR (usually tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const fs::path data = mamba::fuzz::TestDataDir();
  CorpusWriter out(argv[1]);
  SafetensorsSeeds(data, &out);
  ModelConfigSeeds(data, &out);
  TokenizerSeeds(data, &out);
  RequestSeeds(&out);
  SessionSeeds(&out);
  StopMatcherSeeds(&out);
  std::printf("%d new seeds in %s\n", out.written(), argv[1]);
  return 0;
}
