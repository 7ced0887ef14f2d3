// The pieces of the Prometheus text exposition format 0.0.4 that need care: name rules, escaping
// and number formatting. The registry (registry.h) builds whole expositions from these.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace mamba::metrics {

// The value of the Content-Type header for an exposition in this format.
inline constexpr char kTextFormatContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// OK when `name` is a valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*. The error names the offending
// name and the allowed form.
absl::Status ValidateMetricName(std::string_view name);

// OK when `name` is a valid label name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved
// for Prometheus itself).
absl::Status ValidateLabelName(std::string_view name);

// OK when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF). Label values and help texts must be, or Prometheus rejects the whole scrape.
absl::Status ValidateUtf8(std::string_view text);

// Appends `help` with backslash and line feed escaped (\\ and \n), as a # HELP line requires.
void AppendEscapedHelp(std::string_view help, std::string* out);

// Appends `value` with backslash, double quote and line feed escaped (\\, \" and \n), as a label
// value between double quotes requires.
void AppendEscapedLabelValue(std::string_view value, std::string* out);

// Appends a sample value: "+Inf", "-Inf", "NaN", integers up to 2^53 without exponent or point,
// anything else with the fewest digits that read back to the same double, plainly between 1e-4
// and 1e21 (0.25, 0.0001, 1795389645.17) and with an exponent outside (1e-05, 1e+300).
void AppendSampleValue(double value, std::string* out);
std::string FormatSampleValue(double value);

}  // namespace mamba::metrics
