// A Jinja template engine for chat templates: the subset of Jinja2 that Hugging Face chat
// templates use, rendered exactly as transformers' apply_chat_template renders them (jinja2's
// ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the loopcontrols extension;
// globals raise_exception and strftime_now; transformers' own tojson filter). What is and is not
// supported is listed in docs/chat_templates.md; tests/unit/tokenizer/
// chat_template_fixtures_test.cc compares the output with jinja2's byte for byte.
//
// Values follow Python's semantics (str slicing by code point, Python's float formatting and
// repr, jinja2's Undefined: printing an undefined value gives "", testing it gives false,
// anything else done with it is an error naming it).
//
// Thread-safety: a Template is immutable once parsed; Render may run on any number of threads
// at once, and copies share the parsed program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mamba::tokenizer::jinja {

struct Program;

// Bounds on one render, so that a hostile template cannot hang or exhaust memory. Exceeding one
// is RESOURCE_EXHAUSTED.
struct RenderOptions {
  // The output, and any string, list or printed value built while rendering, in bytes (list
  // lengths in items).
  size_t max_output_bytes = size_t{32} << 20;
  // Work: statements run, expression nodes evaluated, loop iterations, elements compared.
  int64_t max_steps = 10'000'000;
  // Nested macro calls (jinja2 is bounded only by Python's recursion limit).
  int max_call_depth = 100;
  // The clock of strftime_now(format), as local broken-down time; the current local time when
  // unset. Tests fix it.
  std::optional<std::tm> now;
};

// The error raise_exception(message) gives: INVALID_ARGUMENT whose message is exactly the
// template's message (no line number), carrying the payload kRaisedByTemplatePayload so that a
// caller can tell it from other render errors (a chat endpoint returns it to the client as a
// bad request: the template rejected the conversation).
inline constexpr char kRaisedByTemplatePayload[] = "type.mamba-serve/jinja.RaisedByTemplate";
absl::Status RaisedByTemplate(std::string_view message);
bool IsRaisedByTemplate(const absl::Status& status);

class Template {
 public:
  // Parses `source`. Syntax errors are INVALID_ARGUMENT naming the line and column and what was
  // expected ("line 3, column 12: expected 'endfor' or 'else' to close the 'for' of line 1, got
  // end of template"); so are unknown filters and tests (as in jinja2), and what this engine
  // leaves out: include/import/extends/block (they need a template loader), recursive loops,
  // *args/**kwargs in calls.
  static absl::StatusOr<Template> Parse(std::string_view source);

  // Renders with `context`'s top-level keys as variables (a JSON object, or null for none).
  // Errors: INVALID_ARGUMENT for a context that is not an object, holds text that is not UTF-8
  // or nests deeper than 256 levels; INVALID_ARGUMENT starting "line N: " for what the template
  // did (used an undefined value, a type error, ...); raise_exception's (see above);
  // RESOURCE_EXHAUSTED when `options` are exceeded.
  // With ordered_json, dicts keep the document's key order, as Python's json.loads does; with
  // nlohmann::json their keys are sorted (which `tojson` then shows).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context,
                                     const RenderOptions& options = {}) const;
  absl::StatusOr<std::string> Render(const nlohmann::json& context,
                                     const RenderOptions& options = {}) const;

 private:
  explicit Template(std::shared_ptr<const Program> program);

  std::shared_ptr<const Program> program_;
};

}  // namespace mamba::tokenizer::jinja
