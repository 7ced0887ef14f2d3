// Engine results into API messages. The engine never sees generated proto types; this file is
// where the two meet on the way out (request_validation.h is the way in).
#pragma once

#include <string>

#include "engine/api/generation.h"
#include "engine/engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "mambaserve/v1/generation.pb.h"
#include "mambaserve/v1/models.pb.h"
#include "mambaserve/v1/sessions.pb.h"
#include "server/request_validation.h"

namespace mamba::server {

// Fills `out` from one chunk of output: tokens, text, logprobs (with each token's bytes from
// `tokenizer`), and on the last chunk the finish reason, usage and timing. kError maps to
// FINISH_REASON_UNSPECIFIED: such a stream ends with a non-OK status instead.
void FillGenerateResponse(const GenerationChunk& chunk, const tokenizer::Tokenizer& tokenizer,
                          const std::string& request_id, mambaserve::v1::GenerateResponse* out);

mambaserve::v1::FinishReason ToProtoFinishReason(FinishReason reason);

void FillSession(const SessionInfo& info, mambaserve::v1::Session* out);

// The model description plus the server's limits.
void FillModelInfo(const ModelInfo& info, const RequestLimits& limits, int32_t max_sessions,
                   mambaserve::v1::ModelInfo* out);

}  // namespace mamba::server
