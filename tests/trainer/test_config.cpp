// validate(TrainConfig): every rule refuses its bad value with a message naming the flag, and a
// well-formed config passes.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "../common/user_error.h"
#include "common/check.h"
#include "common/optim.h"
#include "trainer/config.h"
#include "trainer/schedule.h"

namespace driftlab {
namespace {

TrainConfig good() {
  TrainConfig c;
  c.data = "some/data";
  c.steps = 10;
  c.batch.gen_per_class = 8;
  c.optim.schedule.total = c.steps;
  return c;
}

std::string error_of(const TrainConfig& c, int world) {
  return testing_util::user_error_of([&] { validate(c, world); });
}

TEST(TrainConfig, ValidPasses) {
  EXPECT_EQ(error_of(good(), 1), "");
  EXPECT_EQ(error_of(good(), 8), "");  // N = 8 rows over 8 ranks: one each
}

TEST(TrainConfig, EachRuleNamesItsFlag) {
  struct Case {
    void (*change)(TrainConfig&);
    int world;
    const char* flag;
  };
  const Case cases[] = {
      {[](TrainConfig& c) { c.data.clear(); }, 1, "--data"},
      {[](TrainConfig& c) { c.steps = 0; }, 1, "--steps"},
      {[](TrainConfig& c) { c.batch.gen_per_class = 1; }, 1, "--gen_per_class"},
      {[](TrainConfig&) {}, 9, "--gen_per_class"},  // fewer rows than ranks
      {[](TrainConfig& c) { c.batch.pos_per_class = 0; }, 1, "--pos_per_class"},
      {[](TrainConfig& c) { c.batch.unc_per_class = -1; }, 1, "--unc_per_class"},
      {[](TrainConfig& c) { c.batch.classes_per_step = 0; }, 1, "--num_classes_per_step"},
      {[](TrainConfig& c) { c.batch.guidance.alpha_max = 0.5; }, 1, "--alpha_max must be >= 1, got 0.5"},
      {[](TrainConfig& c) { c.batch.guidance.alpha_one_frac = 1.5; }, 1, "--alpha_one_frac must lie in [0, 1], got 1.5"},
      {[](TrainConfig& c) { c.output.log_every = 0; }, 1, "--log_every"},
      {[](TrainConfig& c) { c.checkpoint.every = 0; }, 1, "--ckpt_every"},
      {[](TrainConfig& c) { c.runtime.check_sync_every = -2; }, 1, "--check_sync_every=-2"},
      {[](TrainConfig& c) { c.runtime.collective_timeout = -1; }, 2, "--collective_timeout=-1"},
      {[](TrainConfig& c) { c.optim.schedule.lr = -1; }, 1, "--lr"},
      {[](TrainConfig& c) { c.optim.schedule.decay = "step"; }, 1, "--lr_decay"},
      {[](TrainConfig& c) { c.objective.tau_warmup_steps = -1; }, 1, "--tau_warmup_steps=-1"},
      {[](TrainConfig& c) { c.objective.tau_warmup_scale = 0.5; }, 1, "--tau_warmup_scale=0.5"},
  };
  for (const auto& k : cases) {
    TrainConfig c = good();
    k.change(c);
    const std::string msg = error_of(c, k.world);
    EXPECT_NE(msg.find(k.flag), std::string::npos) << "expected an error naming " << k.flag << ", got '" << msg << "'";
  }
}

TEST(TrainConfig, ResumeListsEveryRefusedDifference) {
  std::map<std::string, std::string> then{{"gen_width", "256"}, {"encoder", "a.pt"}, {"taus", "0.05"},
                                                {"gen_per_class", "64"}, {"lr", "0.001"}, {"steps", "100"},
                                                {"log_every", "50"}, {"collective_timeout", "600"}};
  std::map<std::string, std::string> now = then;
  std::vector<std::string> allowed;
  EXPECT_TRUE(resume_conflicts(then, now, false, &allowed).empty());
  EXPECT_TRUE(allowed.empty());
  now["gen_width"] = "128";    // model
  now["encoder"] = "b.pt";     // model
  now["taus"] = "0.02,0.05";   // objective
  now["gen_per_class"] = "32"; // objective (a set size, not the model)
  now["lr"] = "0.002";         // other: warned
  now["steps"] = "200";        // never counted
  now["collective_timeout"] = "30";  // a runtime setting: never counted either
  auto refused = resume_conflicts(then, now, false, &allowed);
  ASSERT_EQ(refused.size(), 4u);
  EXPECT_EQ(refused[0], "--encoder: 'a.pt' -> 'b.pt'");  // in the record's (sorted) order
  EXPECT_EQ(refused[1], "--gen_per_class: '64' -> '32'");
  EXPECT_EQ(refused[2], "--gen_width: '256' -> '128'");
  EXPECT_EQ(refused[3], "--taus: '0.05' -> '0.02,0.05'");
  EXPECT_EQ(allowed, std::vector<std::string>{"--lr: '0.001' -> '0.002'"});
  allowed.clear();
  refused = resume_conflicts(then, now, true, &allowed);  // objective changes allowed, the model never
  EXPECT_EQ(refused, (std::vector<std::string>{"--encoder: 'a.pt' -> 'b.pt'", "--gen_width: '256' -> '128'"}));
  EXPECT_EQ(allowed.size(), 3u);
  EXPECT_EQ(classify_record_key("gen_per_class"), RecordKey::kObjective);
  EXPECT_EQ(classify_record_key("gen_noise_dim"), RecordKey::kModel);
  EXPECT_EQ(classify_record_key("enc_widths"), RecordKey::kModel);
  EXPECT_EQ(classify_record_key("keys_patch"), RecordKey::kObjective);
  EXPECT_EQ(classify_record_key("ckpt_every"), RecordKey::kOther);
  EXPECT_EQ(classify_record_key("tau_warmup_steps"), RecordKey::kObjective);
  EXPECT_EQ(classify_record_key("tau_warmup_scale"), RecordKey::kObjective);
  EXPECT_EQ(classify_record_key("tau_warmup_reset"), RecordKey::kObjective);
  // The warm-up's moment restart is part of the objective: changing it is refused too.
  then["tau_warmup_reset"] = "true";
  now = then;
  now["tau_warmup_reset"] = "false";
  EXPECT_EQ(resume_conflicts(then, now, false, nullptr), std::vector<std::string>{"--tau_warmup_reset: 'true' -> 'false'"});
  EXPECT_TRUE(resume_conflicts(then, now, true, nullptr).empty());
}

// Every objective field of the run record comes from the flag of the same name, and every
// field is classified as objective: a new field needs nothing else to be recorded and checked.
TEST(TrainConfig, RunRecordObjectiveIsEveryObjectiveFlag) {
  TrainConfig c;
  c.record = {{"taus", "0.02,0.05"}, {"drift_floor", "false"}, {"gen_per_class", "64"},
              {"tau_warmup_steps", "400"}, {"tau_warmup_scale", "10"}, {"tau_warmup_reset", "false"}, {"lr", "0.1"}};
  const auto r = make_run_record(c, models::GeneratorConfig{}, models::EncoderConfig{}, data::DatasetSpec{});
  const auto& o = r.objective();
  EXPECT_EQ(std::vector<double>(o.taus().begin(), o.taus().end()), (std::vector<double>{0.02, 0.05}));
  EXPECT_FALSE(o.drift_floor());
  EXPECT_EQ(o.gen_per_class(), 64);
  EXPECT_EQ(o.tau_warmup_steps(), 400);
  EXPECT_TRUE(o.has_tau_warmup_reset());
  EXPECT_FALSE(o.tau_warmup_reset());
  EXPECT_EQ(r.flags().at("lr"), "0.1");
  const auto* d = proto::ObjectiveSpec::descriptor();
  for (int i = 0; i < d->field_count(); ++i)
    EXPECT_EQ(classify_record_key(d->field(i)->name()), RecordKey::kObjective) << d->field(i)->name();
}

// The warm-up: steps 0 .. tau_warmup_steps - 1 at taus * scale, the taus from then on; off by
// default. (A geometric fall from the scale to 1 over the same steps was measured worse: on a
// 3-mode mixture 5-6 apart it collapsed onto one mode, where the constant warm-up found all 3.)
TEST(TrainConfig, TemperatureWarmupScalesTheTausForItsSteps) {
  ObjectiveConfig o;
  o.taus = {0.02, 0.2};
  EXPECT_EQ(step_taus(o, 0), o.taus);  // off: tau_warmup_steps = 0
  o.tau_warmup_steps = 4;
  o.tau_warmup_scale = 16;
  const double want[] = {16, 16, 16, 16, 1, 1};
  for (int64_t t = 0; t < 6; ++t) {
    const auto taus = step_taus(o, t);
    ASSERT_EQ(taus.size(), 2u);
    EXPECT_NEAR(taus[0], 0.02 * want[t], 1e-12) << "step " << t;
    EXPECT_NEAR(taus[1], 0.2 * want[t], 1e-12) << "step " << t;
  }
  o.tau_warmup_scale = 1;
  EXPECT_EQ(step_taus(o, 0), o.taus);
}

// AdamW's moments restart exactly once: at the first step with the plain taus.
TEST(TrainConfig, MomentsRestartAtTheFirstStepAfterTheWarmup) {
  ObjectiveConfig o;
  for (int64_t t = 0; t < 6; ++t) EXPECT_FALSE(restarts_moments(o, t)) << "no warm-up, step " << t;
  o.tau_warmup_steps = 4;
  for (int64_t t = 0; t < 8; ++t) EXPECT_EQ(restarts_moments(o, t), t == 4) << "step " << t;
  o.tau_warmup_reset = false;
  for (int64_t t = 0; t < 8; ++t) EXPECT_FALSE(restarts_moments(o, t)) << "reset off, step " << t;
}

// schedule() is its pieces, step by step: the plan of (seed, step), the warm-up's temperatures,
// the learning rate and the one moment restart; classes per step capped at the data's classes.
TEST(Schedule, EveryStepIsThePlanTheTausTheLrAndTheRestart) {
  TrainConfig c = good();
  c.steps = 12;
  c.optim.schedule.total = 12;
  c.optim.schedule.warmup = 3;
  c.optim.schedule.decay = "cosine";
  c.objective.tau_warmup_steps = 4;
  c.batch.classes_per_step = 3;
  c.batch.guidance.alpha_max = 2;
  for (int64_t t = 0; t < 12; ++t) {
    const StepSchedule s = schedule(c, 10, t);
    const StepPlan want = plan_step(c.seed, t, 10, 3, c.batch.guidance);
    EXPECT_EQ(s.plan.classes, want.classes) << "step " << t;
    EXPECT_EQ(s.plan.alphas, want.alphas) << "step " << t;
    EXPECT_EQ(s.taus, step_taus(c.objective, t)) << "step " << t;
    EXPECT_DOUBLE_EQ(s.lr, learning_rate(t, c.optim.schedule)) << "step " << t;
    EXPECT_EQ(s.restart_moments, t == 4) << "step " << t;
  }
  EXPECT_EQ(classes_per_step(c, 10), 3);
  EXPECT_EQ(classes_per_step(c, 2), 2);  // capped at the data set's classes
  EXPECT_EQ(classes_per_step(c, 0), 1);  // unlabelled: one problem
  EXPECT_EQ(schedule(c, 0, 5).plan.classes, std::vector<int64_t>{0});
}

}  // namespace
}  // namespace driftlab
