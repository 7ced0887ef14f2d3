// Fuzzes config.json parsing (ParseHfConfig, both the Hugging Face and the state-spaces layouts).
// Beyond not crashing: errors are INVALID_ARGUMENT, an accepted config is valid, and it survives
// ToHfConfigJson -> ParseHfConfig unchanged (the header promises that round trip).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/model/model_config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<mamba::model::ModelConfig> config =
      mamba::model::ParseHfConfig(text, "fuzz/config.json");
  if (!config.ok()) {
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument, "unexpected status %s",
               config.status().ToString().c_str());
    FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  const absl::Status valid = config->Validate();
  FUZZ_CHECK(valid.ok(), "accepted config fails Validate: %s", valid.ToString().c_str());
  FUZZ_CHECK(config->NumParameters() > 0, "NumParameters %lld",
             static_cast<long long>(config->NumParameters()));
  FUZZ_CHECK(mamba::model::StateLayoutOf(*config).elements() > 0, "StateElements %lld",
             static_cast<long long>(mamba::model::StateLayoutOf(*config).elements()));
  FUZZ_CHECK(!config->Summary().empty(), "empty summary");

  const std::string canonical = mamba::model::ToHfConfigJson(*config);
  absl::StatusOr<mamba::model::ModelConfig> back =
      mamba::model::ParseHfConfig(canonical, "canonical");
  FUZZ_CHECK(back.ok(), "the canonical form does not parse: %s\n%s",
             back.status().ToString().c_str(), canonical.c_str());
  FUZZ_CHECK(*back == *config, "round trip changed the config:\n%s\nback:\n%s", canonical.c_str(),
             mamba::model::ToHfConfigJson(*back).c_str());
  return 0;
}
