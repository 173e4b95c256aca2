// validate(TrainConfig) (see config.h).
#include "trainer/config.h"

#include "ckpt/run_record.h"

#include "common/check.h"

#include <set>

namespace driftlab {

void validate(const TrainConfig& c, int world) {
  DL_REQUIRE(!c.data.empty(), "--data is required: a data set folder written by drift_data (see --help)");
  DL_REQUIRE(c.steps >= 1, "--steps must be >= 1, got " << c.steps);
  const BatchConfig& b = c.batch;
  DL_REQUIRE(b.classes_per_step >= 1, "--num_classes_per_step must be >= 1, got " << b.classes_per_step);
  DL_REQUIRE(b.gen_per_class >= 2, "--gen_per_class must be >= 2 (a generated sample needs other negatives), got " << b.gen_per_class);
  DL_REQUIRE(b.gen_per_class >= world, "--gen_per_class (" << b.gen_per_class << ") must be at least the number of ranks (" << world << ")");
  DL_REQUIRE(b.pos_per_class >= 1, "--pos_per_class must be >= 1, got " << b.pos_per_class);
  DL_REQUIRE(b.unc_per_class >= 0, "--unc_per_class must be >= 0, got " << b.unc_per_class);
  DL_REQUIRE(b.guidance.alpha_max >= 1.0, "--alpha_max must be >= 1, got " << b.guidance.alpha_max);
  DL_REQUIRE(b.guidance.alpha_one_frac >= 0 && b.guidance.alpha_one_frac <= 1,
             "--alpha_one_frac must lie in [0, 1], got " << b.guidance.alpha_one_frac);
  DL_REQUIRE(c.output.log_every >= 1 && c.checkpoint.every >= 1, "--log_every and --ckpt_every must be >= 1");
  DL_REQUIRE(c.runtime.check_sync_every >= 0,
             "--check_sync_every=" << c.runtime.check_sync_every << ": expected 0 (off) or a positive number of steps");
  DL_REQUIRE(c.runtime.collective_timeout >= 0 && c.runtime.collective_timeout <= 7 * 24 * 3600.0,
             "--collective_timeout=" << c.runtime.collective_timeout
                                     << ": expected 0 (no deadline) or a number of seconds up to a week");
  DL_REQUIRE(c.objective.tau_warmup_steps >= 0,
             "--tau_warmup_steps=" << c.objective.tau_warmup_steps << ": expected 0 (off) or a number of steps");
  DL_REQUIRE(c.objective.tau_warmup_scale >= 1 && c.objective.tau_warmup_scale <= 1e4,
             "--tau_warmup_scale=" << c.objective.tau_warmup_scale << ": expected a factor in [1, 10000]");
  validate(c.optim.schedule);
}

RecordKey classify_record_key(const std::string& k) {
  // The objective's flags are the fields of its record (proto::ObjectiveSpec), nothing else.
  static const std::set<std::string> objective = [] {
    std::set<std::string> names;
    const auto* d = proto::ObjectiveSpec::descriptor();
    for (int i = 0; i < d->field_count(); ++i) names.insert(d->field(i)->name());
    return names;
  }();
  // Checked first: gen_per_class starts with gen_ but sizes the step, not the model.
  if (objective.count(k)) return RecordKey::kObjective;
  if (k.rfind("gen_", 0) == 0 || k == "encoder" || k.rfind("enc_", 0) == 0) return RecordKey::kModel;
  return RecordKey::kOther;
}

std::vector<std::string> resume_conflicts(const std::map<std::string, std::string>& then,
                                          const std::map<std::string, std::string>& now, bool allow_objective_change,
                                          std::vector<std::string>* allowed) {
  std::vector<std::string> refused;
  for (const auto& [k, v] : then) {
    auto it = now.find(k);
    if (it == now.end() || it->second == v || k == "resume" || k == "steps" || k == "threads" ||
        k == "collective_timeout")
      continue;
    const std::string line = "--" + k + ": '" + v + "' -> '" + it->second + "'";
    const RecordKey kind = classify_record_key(k);
    if (kind == RecordKey::kModel || (kind == RecordKey::kObjective && !allow_objective_change)) refused.push_back(line);
    else if (allowed) allowed->push_back(line);
  }
  return refused;
}

proto::RunConfig make_run_record(const TrainConfig& c, const models::GeneratorConfig& g, const models::EncoderConfig& e,
                                 const data::DatasetSpec& spec) {
  proto::RunConfig r;
  for (const auto& [k, v] : c.record) (*r.mutable_flags())[k] = v;
  ckpt::fill_from_map(g.to_map(), "gen_", r.mutable_generator(), "the generator");
  ckpt::fill_from_map(e.to_map(), "enc_", r.mutable_encoder(), "the encoder");
  ckpt::fill_from_map(data::spec_to_map(spec), "", r.mutable_data_spec(), "the data set's spec");
  r.set_model_description(g.to_text());
  // Field by field from the flags of the same name: the record is defined once, in the proto.
  ckpt::fill_from_map(c.record, "", r.mutable_objective(), "the objective flags");
  return r;
}

}  // namespace driftlab
