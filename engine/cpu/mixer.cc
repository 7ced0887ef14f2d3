#include "engine/cpu/mixer.h"

#include "absl/strings/str_cat.h"
#include "engine/cpu/mamba1_mixer.h"
#include "engine/cpu/mamba2_mixer.h"

namespace mamba::cpu {

absl::StatusOr<std::unique_ptr<Mixer>> MakeMixer(const model::ModelConfig& config,
                                                 const model::ModelWeights& weights,
                                                 ThreadPool* pool) {
  switch (config.family) {
    case model::ModelFamily::kMamba1:
    case model::ModelFamily::kFalconMamba:
      return MakeMamba1Mixer(config, weights, pool);
    case model::ModelFamily::kMamba2:
      return MakeMamba2Mixer(config, weights, pool);
  }
  return absl::InvalidArgumentError(absl::StrCat("the CPU backend has no layers for the ",
                                                 model::FamilyName(config.family), " family"));
}

}  // namespace mamba::cpu
