// Every model family through the whole service (CPU backend, loopback gRPC): the invariants users
// rely on, run once per family on its tiny synthetic model. A session continues exactly like one
// request over its whole history; a fork diverges without touching its parent; sessions moved to
// host memory and back, and exported and imported, continue exactly; stop strings and logprobs
// work; GetModelInfo names the family; and a state never crosses into a model of another family.
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/server/server_test_util.h"

namespace mamba::server::testing {
namespace {

using ::testing::HasSubstr;

struct Family {
  const char* model;   // synthetic model
  const char* family;  // what GetModelInfo and the metrics call it
};

std::string Name(const ::testing::TestParamInfo<Family>& info) {
  std::string name = info.param.family;
  return name;
}

class ModelFamiliesTest : public ::testing::TestWithParam<Family> {
 protected:
  // Both servers of StatesNeverCrossFamilies sign with this key, so that an export's signature
  // passes and the model check is what refuses it.
  static std::string KeyFile() {
    const std::string path = ::testing::TempDir() + "/model_families_session_keys";
    std::ofstream(path) << std::string(64, 'a') << "\n";
    return path;
  }

  void SetUp() override {
    ServerOptions options = TinyServerOptions();
    options.engine.sessions.key_file = KeyFile();
    options.engine.model = absl::StrCat("synthetic:", GetParam().model);
    // Two slots for three sessions: idle ones move to host memory and back.
    options.engine.backend.num_slots = 2;
    absl::StatusOr<std::unique_ptr<MambaServer>> server = MambaServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->LoadModel().ok());
    channel_ = Connect(server_->address());
    generation_ = v1::Generation::NewStub(channel_);
    sessions_ = v1::Sessions::NewStub(channel_);
    models_ = v1::Models::NewStub(channel_);
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

  // The tokens a greedy request over `ids` generates, without a session.
  std::vector<int32_t> Fresh(const std::vector<int32_t>& ids, int n) {
    StreamResult r = Generate(*generation_, GreedyRequest(ids, n));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    return r.token_ids;
  }

  static std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
    std::vector<int32_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  }

  std::unique_ptr<MambaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
  std::unique_ptr<v1::Models::Stub> models_;
};

TEST_P(ModelFamiliesTest, ModelInfoNamesTheFamily) {
  v1::ModelInfo info;
  grpc::ClientContext context;
  ASSERT_TRUE(models_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.family(), GetParam().family);
  const model::ModelConfig& c = server_->engine()->model_info().config;
  EXPECT_EQ(info.state_bytes_per_session(), model::StateLayoutOf(c).elements() * 4);
  if (c.family == model::ModelFamily::kMamba2) {
    EXPECT_EQ(info.num_heads(), c.n_heads);
    EXPECT_EQ(info.head_dim(), c.head_dim);
    EXPECT_EQ(info.n_groups(), c.n_groups);
  }
}

TEST_P(ModelFamiliesTest, SessionTurnsHostMovesAndForksContinueExactly) {
  const std::vector<int32_t> t1 = {72, 101, 108, 108, 111};
  const std::vector<int32_t> t2 = {32, 119, 111, 114};
  const std::string a = CreateSession({});
  StreamResult turn1 = Generate(*generation_, GreedyRequest(t1, 10, a));
  ASSERT_TRUE(turn1.status.ok()) << turn1.status.error_message();
  // Two more sessions on two slots: `a` goes to host memory and comes back for its next turn.
  const std::string b = CreateSession({1, 2, 3});
  const std::string c = CreateSession({4, 5, 6});
  StreamResult turn_b = Generate(*generation_, GreedyRequest({7}, 4, b));
  StreamResult turn_c = Generate(*generation_, GreedyRequest({8}, 4, c));
  ASSERT_TRUE(turn_b.status.ok() && turn_c.status.ok());
  StreamResult turn2 = Generate(*generation_, GreedyRequest(t2, 10, a));
  ASSERT_TRUE(turn2.status.ok()) << turn2.status.error_message();
  EXPECT_EQ(turn2.token_ids, Fresh(Concat({t1, turn1.token_ids, t2}), 10));
  EXPECT_EQ(turn_b.token_ids, Fresh({1, 2, 3, 7}, 4));

  // A fork takes its own turn; the parent continues as if it never existed.
  v1::ForkSessionRequest fork;
  fork.set_session_id(a);
  v1::Session child;
  grpc::ClientContext context;
  ASSERT_TRUE(sessions_->ForkSession(&context, fork, &child).ok());
  const std::vector<int32_t> history = Concat({t1, turn1.token_ids, t2, turn2.token_ids});
  StreamResult child_turn = Generate(*generation_, GreedyRequest({50, 60}, 6, child.session_id()));
  StreamResult parent_turn = Generate(*generation_, GreedyRequest({70}, 6, a));
  ASSERT_TRUE(child_turn.status.ok() && parent_turn.status.ok());
  EXPECT_EQ(child_turn.token_ids, Fresh(Concat({history, {50, 60}}), 6));
  EXPECT_EQ(parent_turn.token_ids, Fresh(Concat({history, {70}}), 6));
}

TEST_P(ModelFamiliesTest, ExportAndImportContinueExactly) {
  const std::string id = CreateSession({5, 6, 7, 8});
  ASSERT_TRUE(Generate(*generation_, GreedyRequest({9}, 5, id)).status.ok());
  v1::ExportSessionRequest export_request;
  export_request.set_session_id(id);
  v1::ExportSessionResponse exported;
  grpc::ClientContext c1;
  ASSERT_TRUE(sessions_->ExportSession(&c1, export_request, &exported).ok());
  v1::ImportSessionRequest import_request;
  import_request.set_state(exported.state());
  v1::Session imported;
  grpc::ClientContext c2;
  ASSERT_TRUE(sessions_->ImportSession(&c2, import_request, &imported).ok());
  StreamResult x = Generate(*generation_, GreedyRequest({10, 11}, 8, id));
  StreamResult y = Generate(*generation_, GreedyRequest({10, 11}, 8, imported.session_id()));
  ASSERT_TRUE(x.status.ok() && y.status.ok());
  EXPECT_EQ(x.token_ids, y.token_ids);
}

TEST_P(ModelFamiliesTest, StopStringsAndLogprobs) {
  v1::GenerateRequest request = GreedyRequest({104, 105}, 30);
  request.set_logprobs(3);
  StreamResult all = Generate(*generation_, request);
  ASSERT_TRUE(all.status.ok()) << all.status.error_message();
  ASSERT_EQ(all.logprobs.size(), all.token_ids.size());
  for (const v1::TokenLogprobs& lp : all.logprobs) {
    EXPECT_EQ(lp.top_size(), 3);
    EXPECT_LE(lp.chosen().logprob(), 0.0f);
  }
  // Stop at a character greedy decoding produces anyway (an ASCII one: the tiny models' output
  // is random bytes, and a stop string must be valid UTF-8).
  size_t at = 1;
  while (at < all.text.size() && static_cast<unsigned char>(all.text[at]) >= 0x80) ++at;
  if (at < all.text.size()) {
    const std::string stop = all.text.substr(at, 1);
    request.mutable_stopping()->add_stop(stop);
    StreamResult stopped = Generate(*generation_, request);
    ASSERT_TRUE(stopped.status.ok()) << stopped.status.error_message();
    EXPECT_EQ(stopped.finish_reason, v1::FINISH_REASON_STOP);
    EXPECT_EQ(stopped.text, all.text.substr(0, all.text.find(stop)));
    request.mutable_stopping()->clear_stop();
  }
  // And at a token id: the stream ends with it.
  request.mutable_stopping()->add_stop_token_ids(all.token_ids[4]);
  StreamResult by_id = Generate(*generation_, request);
  ASSERT_TRUE(by_id.status.ok()) << by_id.status.error_message();
  EXPECT_EQ(by_id.finish_reason, v1::FINISH_REASON_STOP);
  const size_t first = std::find(all.token_ids.begin(), all.token_ids.end(), all.token_ids[4]) -
                       all.token_ids.begin();
  EXPECT_EQ(by_id.token_ids.size(), first + 1);
}

// A state exported from one family is refused by a server of another, naming both.
TEST_P(ModelFamiliesTest, StatesNeverCrossFamilies) {
  const std::string id = CreateSession({1, 2});
  v1::ExportSessionRequest export_request;
  export_request.set_session_id(id);
  v1::ExportSessionResponse exported;
  grpc::ClientContext c1;
  ASSERT_TRUE(sessions_->ExportSession(&c1, export_request, &exported).ok());

  ServerOptions other = TinyServerOptions();
  const bool is_mamba1 = std::string(GetParam().family) == "mamba1";
  other.engine.model = is_mamba1 ? "synthetic:mamba2-tiny" : "synthetic:tiny";
  other.engine.sessions.key_file = KeyFile();
  absl::StatusOr<std::unique_ptr<MambaServer>> started = MambaServer::Start(other);
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_TRUE((*started)->LoadModel().ok());
  std::unique_ptr<v1::Sessions::Stub> stub = v1::Sessions::NewStub(Connect((*started)->address()));
  v1::ImportSessionRequest import_request;
  import_request.set_state(exported.state());
  v1::Session imported;
  grpc::ClientContext c2;
  grpc::Status status = stub->ImportSession(&c2, import_request, &imported);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("exported from a ", GetParam().family, " model")));
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("serves a ", is_mamba1 ? "mamba2" : "mamba1", " model")));
}

INSTANTIATE_TEST_SUITE_P(Families, ModelFamiliesTest,
                         ::testing::Values(Family{"tiny", "mamba1"},
                                           Family{"mamba2-tiny", "mamba2"},
                                           Family{"falcon-mamba-tiny", "falcon_mamba"}),
                         Name);

}  // namespace
}  // namespace mamba::server::testing
