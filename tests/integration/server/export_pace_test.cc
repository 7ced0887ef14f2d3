// Session replies are built off the engine's scheduler thread: a timing test, so it runs alone
// (RUN_SERIAL) and asserts its ratio only in optimized builds without sanitizers.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "engine/model/model_loader.h"
#include "gtest/gtest.h"
#include "tests/integration/server/server_test_util.h"

namespace mamba::server::testing {
namespace {

// Session replies are built off the scheduler thread: ExportSession hands over the state's bytes
// and the reply thread encodes them (a copy and a checksum of the whole state) and builds the
// response, so streams keep their pace while a large state is exported. The model here has the
// state of mamba-1.4b (48 layers x 4096 channels x (16 + 3) values, 14.9 MB in f32) and little
// compute, and three clients export it back to back beside three streams.
class ServerExportPaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model::ModelConfig config;
    config.n_layer = 48;
    config.d_model = 64;
    config.d_inner = 4096;
    config.expand = 64;
    config.d_state = 16;
    config.d_conv = 4;
    config.dt_rank = 2;
    config.vocab_size = 257;
    config.bos_token_id = config.eos_token_id = config.pad_token_id = 256;
    ASSERT_EQ(model::StateLayoutOf(config).elements() * 4, 48 * 4096 * 19 * 4);
    dir_ = ::testing::TempDir() + "/export_pace_model_" + std::to_string(getpid());
    absl::StatusOr<model::ModelWeights> weights =
        model::MakeSyntheticWeights(config, /*seed=*/3, model::DType::kF32);
    ASSERT_TRUE(weights.ok()) << weights.status();
    ASSERT_TRUE(model::SaveCheckpoint(config, *weights, dir_).ok());
    ServerOptions options = TinyServerOptions();
    options.engine.model = dir_;
    options.engine.backend.num_slots = 8;
    options.max_receive_message_bytes = 64 << 20;
    absl::StatusOr<std::unique_ptr<MambaServer>> server = MambaServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::Status loaded = server_->LoadModel();
    ASSERT_TRUE(loaded.ok()) << loaded;
    channel_ = Connect(server_->address());
    generation_ = v1::Generation::NewStub(channel_);
    sessions_ = v1::Sessions::NewStub(channel_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Tokens per second of three greedy streams of `tokens` tokens each, run together.
  double StreamRate(int tokens) {
    const absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    std::atomic<int64_t> produced{0};
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&, i] {
        StreamResult r =
            Generate(*generation_, GreedyRequest({static_cast<int32_t>(i + 1)}, tokens));
        EXPECT_TRUE(r.status.ok()) << r.status.error_message();
        produced += static_cast<int64_t>(r.token_ids.size());
      });
    }
    for (std::thread& t : threads) t.join();
    return static_cast<double>(produced.load()) / absl::ToDoubleSeconds(absl::Now() - start);
  }

  std::string CreateSession(const std::vector<int32_t>& prompt) {
    v1::CreateSessionRequest request;
    request.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
    v1::Session session;
    grpc::ClientContext context;
    grpc::Status status = sessions_->CreateSession(&context, request, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return session.session_id();
  }

  std::string dir_;
  std::unique_ptr<MambaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
};

TEST_F(ServerExportPaceTest, StreamsKeepTheirPaceDuringLargeExports) {
  constexpr int kExporters = 3;
  std::vector<std::string> ids;
  for (int e = 0; e < kExporters; ++e)
    ids.push_back(CreateSession({1, 2, static_cast<int32_t>(e)}));
  StreamRate(8);  // warm up
  double quiet = 0.0, exporting = 0.0;
  int64_t exports = 0;
  for (int round = 0; round < 2; ++round) {  // alternated, so that drift cancels out
    quiet += StreamRate(60);
    std::atomic<bool> stop{false};
    std::vector<std::thread> exporters;
    for (int e = 0; e < kExporters; ++e) {
      exporters.emplace_back([&, e] {
        v1::ExportSessionRequest request;
        request.set_session_id(ids[e]);
        while (!stop.load()) {
          v1::ExportSessionResponse response;
          grpc::ClientContext context;
          grpc::Status st = sessions_->ExportSession(&context, request, &response);
          ASSERT_TRUE(st.ok()) << st.error_message();
          ASSERT_GT(response.state().size(), size_t{48 * 4096 * 19 * 4});
          ++exports;
        }
      });
    }
    exporting += StreamRate(60);
    stop = true;
    for (std::thread& t : exporters) t.join();
  }
  ASSERT_GE(exports, 4);
  RecordProperty("exports", static_cast<int>(exports));
  RecordProperty("pace_ratio_percent", static_cast<int>(100.0 * exporting / quiet));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "timing is not meaningful under sanitizers (" << exporting / quiet << ")";
#else
  // With the reply built on the scheduler thread, each export stalled every stream for several
  // copies and a checksum of 15 MB: streams kept about half their pace (0.48-0.50 measured on a
  // 2-core machine). Now the scheduler thread copies the state once and the rest of the drop is
  // the exporters' own CPU beside the streams (0.71-0.73 on the same machine).
  EXPECT_GE(exporting / quiet, 0.6) << exports << " exports; " << quiet / 2 << " tok/s quiet, "
                                    << exporting / 2 << " tok/s exporting";
#endif
}

}  // namespace
}  // namespace mamba::server::testing
