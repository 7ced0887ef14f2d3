// Turns runtime choices into compile-time constants in one place, so one kernel body serves every
// variant: BOOL_SWITCH(cond, kConst, [&] { Launch<kConst>(...); });
#pragma once

#define BOOL_SWITCH(COND, CONST_NAME, ...)      \
  [&] {                                         \
    if (COND) {                                 \
      constexpr static bool CONST_NAME = true;  \
      return __VA_ARGS__();                     \
    } else {                                    \
      constexpr static bool CONST_NAME = false; \
      return __VA_ARGS__();                     \
    }                                           \
  }()
