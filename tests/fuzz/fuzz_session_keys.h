// The session key the fuzz targets sign and verify exports with (a fixed test key, never used by
// a server).
#pragma once

#include "engine/sessions/session_codec.h"

namespace mamba::fuzz {

inline const mamba::sessions::SessionKeys& FuzzSessionKeys() {
  static const mamba::sessions::SessionKeys* keys = new mamba::sessions::SessionKeys(
      mamba::sessions::SessionKeys::Parse("fuzz-session-key-0123456789abcdef0123456789abcdef",
                                          "fuzz")
          .value());
  return *keys;
}

}  // namespace mamba::fuzz
