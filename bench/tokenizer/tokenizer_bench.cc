// mamba-tokenizer-bench: single-thread encode and decode throughput of a tokenizer, and the
// memory it takes.
//
//   mamba-tokenizer-bench --tokenizer=tests/data/tokenizer/neox50k/tokenizer.json.gz
//                         --input=tests/data/tokenizer/large_input.txt.gz
//
// Encode is timed over the whole input, repeated; the first pass (which fills the per-thread
// word cache) is reported apart from the median of the others. Memory is the process's resident
// set before and after loading (and its peak, which includes the parsed JSON document).
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, tokenizer, "",
          "tokenizer.json or tokenizer.json.gz; empty: the byte tokenizer");
ABSL_FLAG(std::string, input, "", "UTF-8 text to encode (may be gzipped)");
ABSL_FLAG(int, iterations, 7, "timed encode passes after the first");
ABSL_FLAG(std::string, json, "", "also write the results as JSON to this file");

namespace {

using Clock = std::chrono::steady_clock;

// A field of /proc/self/status in kB (VmRSS, VmHWM), or -1 where unavailable.
long ProcStatusKb(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stol(line.substr(prefix.size()));
  }
  return -1;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU time of this thread: on a shared machine, wall time also counts other processes' turns.
double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string input_path = absl::GetFlag(FLAGS_input);
  if (input_path.empty()) {
    std::fprintf(stderr, "--input is required\n");
    return 2;
  }
  absl::StatusOr<std::string> text = mamba::tokenizer::ReadFileMaybeGzipped(input_path);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", std::string(text.status().message()).c_str());
    return 1;
  }

  const long rss_before = ProcStatusKb("VmRSS");
  const size_t heap_before = mallinfo2().uordblks + mallinfo2().hblkhd;
  const auto load_start = Clock::now();
  std::unique_ptr<mamba::tokenizer::Tokenizer> tokenizer;
  const std::string tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  if (tokenizer_path.empty()) {
    tokenizer = mamba::tokenizer::MakeByteTokenizer({"<|endoftext|>"});
  } else {
    absl::StatusOr<std::unique_ptr<mamba::tokenizer::Tokenizer>> loaded =
        mamba::tokenizer::LoadTokenizerJson(tokenizer_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
      return 1;
    }
    tokenizer = *std::move(loaded);
  }
  const double load_s = Seconds(load_start, Clock::now());
  const long rss_after = ProcStatusKb("VmRSS");
  const long peak = ProcStatusKb("VmHWM");
  // Heap bytes the tokenizer holds (freed parser memory that malloc keeps is not counted).
  const double heap_mb =
      static_cast<double>(mallinfo2().uordblks + mallinfo2().hblkhd - heap_before) / (1 << 20);

  // Encode: the first pass fills the word cache; then the median of the timed passes.
  auto start = Clock::now();
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(*text);
  const double first_s = Seconds(start, Clock::now());
  if (!ids.ok()) {
    std::fprintf(stderr, "%s\n", std::string(ids.status().message()).c_str());
    return 1;
  }
  std::vector<double> encode_s;
  std::vector<double> encode_cpu_s;
  for (int i = 0; i < absl::GetFlag(FLAGS_iterations); ++i) {
    start = Clock::now();
    const double cpu_start = ThreadCpuSeconds();
    absl::StatusOr<std::vector<int32_t>> again = tokenizer->Encode(*text);
    encode_cpu_s.push_back(ThreadCpuSeconds() - cpu_start);
    encode_s.push_back(Seconds(start, Clock::now()));
    if (!again.ok() || *again != *ids) {
      std::fprintf(stderr, "encode is not deterministic\n");
      return 1;
    }
  }
  // Decode the whole id list, and stream it through an IncrementalDecoder.
  std::vector<double> decode_s;
  std::vector<double> stream_s;
  size_t decoded_bytes = 0;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_iterations)); ++i) {
    start = Clock::now();
    absl::StatusOr<std::string> decoded = tokenizer->Decode(*ids);
    decode_s.push_back(Seconds(start, Clock::now()));
    if (!decoded.ok()) return 1;
    decoded_bytes = decoded->size();
    start = Clock::now();
    mamba::tokenizer::IncrementalDecoder stream(tokenizer.get());
    size_t streamed = 0;
    for (int32_t id : *ids) streamed += stream.Add(id)->size();
    streamed += stream.Flush().size();
    stream_s.push_back(Seconds(start, Clock::now()));
    if (streamed != decoded_bytes) return 1;
  }

  const double mb = static_cast<double>(text->size()) / 1e6;
  const double enc = Median(encode_s);
  const double enc_cpu = Median(encode_cpu_s);
  const double dec = Median(decode_s);
  const double str = Median(stream_s);
  std::printf("tokenizer  %s (%s, vocab %d)\n",
              tokenizer_path.empty() ? "byte" : tokenizer_path.c_str(), tokenizer->kind().c_str(),
              tokenizer->vocab_size());
  std::printf("input      %s: %.2f MB -> %zu tokens (%.2f bytes/token)\n", input_path.c_str(), mb,
              ids->size(), static_cast<double>(text->size()) / static_cast<double>(ids->size()));
  std::printf(
      "load       %.3f s; tokenizer heap %.1f MB; resident %+.1f MB after load, "
      "peak %.1f MB (process)\n",
      load_s, heap_mb, (rss_after - rss_before) / 1024.0, peak / 1024.0);
  std::printf(
      "encode     %.1f MB/s (%.2f M tokens/s), %.1f MB per CPU-second; first pass %.1f MB/s\n",
      mb / enc, static_cast<double>(ids->size()) / enc / 1e6, mb / enc_cpu, mb / first_s);
  std::printf("decode     %.1f MB/s; streaming %.1f M tokens/s\n",
              static_cast<double>(decoded_bytes) / 1e6 / dec,
              static_cast<double>(ids->size()) / str / 1e6);

  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << absl::StrFormat(
        "{\"tokenizer\": \"%s\", \"input_bytes\": %zu, \"tokens\": %zu, \"load_s\": %.4f, "
        "\"heap_mb\": %.2f, \"rss_growth_mb\": %.2f, \"peak_rss_mb\": %.2f, \"encode_mb_s\": %.2f, "
        "\"encode_mb_per_cpu_s\": %.2f, \"encode_first_pass_mb_s\": %.2f, \"decode_mb_s\": %.2f, "
        "\"stream_tokens_s\": %.0f}\n",
        tokenizer_path, text->size(), ids->size(), load_s, heap_mb,
        (rss_after - rss_before) / 1024.0, peak / 1024.0, mb / enc, mb / enc_cpu, mb / first_s,
        static_cast<double>(decoded_bytes) / 1e6 / dec, static_cast<double>(ids->size()) / str);
  }
  return 0;
}
