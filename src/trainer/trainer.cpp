// The drifting training loop (see trainer.h for the data flow).
#include "trainer/trainer.h"

#include <glog/logging.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "common/check.h"            // DL_REQUIRE, UserError
#include "common/progress.h"         // ProgressBar::format_duration
#include "common/rng.h"              // counter-based draws
#include "common/speed_reference.h"  // the GEMM GFLOP/s logged beside step times
#include "common/timer.h"            // Stopwatch, PhaseTimes
#include "data/reader.h"             // ShardSet
#include "data/loader.h"             // the global per-step draw of real samples, prefetching
#include "comm/communicator.h"       // Communicator
#include "comm/drift_reducer.h"      // CommunicatorReducer
#include "comm/grad_buckets.h"       // GradientBuckets
#include "comm/replica_sync.h"       // broadcast_module, maybe_check_sync
#include "comm/topology.h"           // topology()
#include "drift/features.h"          // feature keys, total_loss
#include "models/encoders.h"         // make_frozen_encoder
#include "models/generators.h"       // make_generator, draw_generator_inputs
#include "data/picture.h"            // picture
#include "models/sampling.h"         // generate
#include "ckpt/checkpoint.h"
#include "ckpt/run_record.h"      // sharded checkpoints
#include "trainer/metrics.h"         // metrics.jsonl + TensorBoard events
#include "common/optim.h"           // AdamW, EMA, clipping, schedule
#include "common/signals.h"         // graceful stop
#include "trainer/schedule.h"        // schedule: plan, temperatures, lr of step t
#include "trainer/config.h"          // TrainConfig
#include "trainer/step.h"            // run_step: one step's computation
#include "trainer/log_window.h"      // LogWindow: the averages of a log row


namespace driftlab {
namespace {

namespace fs = std::filesystem;

// One group of the tensors a checkpoint holds, under a name prefix: what save() writes and
// resume() reads back. `sliced`: every rank holds the same values and writes its 1/W slice of
// each tensor (optimizer state); otherwise rank 0 writes them whole.
struct TensorGroup {
  std::string prefix;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  bool sliced = false;
};

class Trainer {
 public:
  Trainer(comm::Communicator& comm, TrainConfig config) : cfg_(std::move(config)), comm_(comm), reducer_(comm) {}
  int run();

 private:
  void build();
  int64_t resume();
  void step(int64_t t);
  void save(int64_t next_step);
  // True when every rank passed ok = true (collective); else failed_rank_ is the lowest that did not.
  bool agree_all_ok(bool ok);
  [[noreturn]] void fail_checkpoint(const std::string& dir, int64_t next_step, const std::string& error);
  std::vector<TensorGroup> checkpoint_tensors();
  // The stop signal every rank agrees on at a step boundary (collective; 0: none).
  int agreed_stop_signal();
  void write_picture(int64_t step, const std::string& name);
  void draw_picture(int64_t step, const std::string& name);
  fs::path ckpt_root() const { return fs::path(cfg_.output.run_dir) / "checkpoints"; }

  const TrainConfig cfg_;
  proto::RunConfig run_record_;                 // the typed run record of every checkpoint
  comm::Communicator& comm_;
  comm::CommunicatorReducer reducer_;
  int rank_ = 0, world_ = 1;
  torch::Device device_ = torch::kCPU;
  std::shared_ptr<data::ShardSet> data_;
  std::unique_ptr<data::PrefetchLoader> loader_;
  data::StepRequest request(uint64_t t);
  models::GeneratorConfig gen_cfg_;
  models::GeneratorPtr gen_, ema_gen_;
  models::EncoderPtr enc_;
  std::vector<torch::Tensor> params_;
  std::vector<std::pair<std::string, torch::Tensor>> named_;  // parameters, then buffers
  std::vector<std::string> param_names_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<Ema> ema_;
  std::vector<std::unique_ptr<Ema>> extra_emas_;  // --ema_extra_decays, in the flag's order
  std::unique_ptr<comm::GradientBuckets> buckets_;
  std::unique_ptr<MetricsWriter> metrics_;
  drift::Workspace drift_ws_;  // scratch of the drift kernel, reused across steps
  int64_t classes_per_step_ = 1;  // classes_per_step(cfg_, the data set's classes), for counts and logs
  StepContext step_ctx_;
  PhaseTimes phases_;
  std::optional<LogWindow> log_;  // the steps since the last log row (from the first step run)
  std::string last_checkpoint_ = "none";
  int failed_rank_ = -1;
  bool pictures_ = true;  // off when the data set's samples cannot be drawn (warned once at start)
};

void Trainer::build() {
  comm_.set_step(0);
  rank_ = comm_.rank();
  world_ = comm_.world_size();
  validate(cfg_, world_);
  device_ = cfg_.runtime.device == "auto" ? comm_.device() : comm::select_device(cfg_.runtime.device, comm::topology());
  DL_REQUIRE(comm_.backend() != "nccl" || device_ == comm_.device(),
             "--device=" << cfg_.runtime.device << ": the nccl backend computes on this rank's GPU ("
                         << comm_.device().str() << "); leave --device=auto, or use --backend=mpi for another device");
  if (cfg_.runtime.threads > 0) torch::set_num_threads(cfg_.runtime.threads);
  else if (const char* env = std::getenv("DRIFTLAB_THREADS"); env && std::atoi(env) > 0) torch::set_num_threads(std::atoi(env));

  data_ = data::ShardSet::open(cfg_.data);
  const auto& spec = data_->spec();
  classes_per_step_ = classes_per_step(cfg_, spec.num_classes);

  gen_cfg_ = models::resolve_generator(cfg_.generator, spec.decoded_shape(), spec.num_classes);
  gen_ = models::make_generator(gen_cfg_);
  ema_gen_ = models::make_generator(gen_cfg_);
  const int64_t channels = spec.decoded_shape().size() == 3 ? spec.decoded_shape()[0] : 0;
  const auto enc_cfg = models::resolve_encoder(cfg_.encoder, channels);
  // The run record: the model as resolved (preset and data-set values included), the objective
  // and the data's schema, typed; the flags as given beside them. The sampler rebuilds exactly
  // this model from it, and resume compares like with like, field by field.
  run_record_ = make_run_record(cfg_, gen_cfg_, enc_cfg, spec);
  const PrecisionChoice precision = resolve_precision(cfg_.runtime.precision, device_);
  run_record_.set_precision(precision_name(precision.precision));
  enc_ = models::make_frozen_encoder(enc_cfg);
  gen_->to(device_);
  ema_gen_->to(device_);
  enc_->to(device_);

  for (auto& p : gen_->named_parameters()) {
    params_.push_back(p.value());
    param_names_.push_back(p.key());
  }
  named_ = comm::replica_tensors(*gen_);
  // Every rank starts from rank 0's weights (they are seeded identically anyway; this makes it a rule).
  comm::broadcast_module(comm_, *gen_, 0);
  opt_ = std::make_unique<AdamW>(params_, cfg_.optim.adam);
  ema_ = std::make_unique<Ema>(params_, cfg_.optim.ema_decay);
  for (double d : cfg_.optim.ema_extra_decays) extra_emas_.push_back(std::make_unique<Ema>(params_, d));
  buckets_ = std::make_unique<comm::GradientBuckets>(comm_, params_);

  step_ctx_.field.floor = cfg_.objective.floor;
  step_ctx_.field.path = cfg_.objective.path;
  step_ctx_.field.workspace = &drift_ws_;
  step_ctx_.batch = cfg_.batch;
  step_ctx_.keys.per_location = cfg_.objective.keys_per_location;
  step_ctx_.keys.patch2 = step_ctx_.keys.patch4 = cfg_.objective.keys_patch;
  step_ctx_.seed = cfg_.seed;
  step_ctx_.num_classes = spec.num_classes;
  step_ctx_.gen = gen_.get();
  step_ctx_.encoder = enc_cfg.kind == "identity" ? nullptr : enc_.get();
  step_ctx_.comm = &comm_;
  step_ctx_.reducer = &reducer_;
  step_ctx_.device = device_;
  step_ctx_.precision = precision.precision;
  metrics_ = std::make_unique<MetricsWriter>(cfg_.output.run_dir, rank_ == 0);
  // Side outputs never stop a run: a shape the picture writer cannot draw is found here, once.
  if (const std::string why = data::picture_unsupported(spec); !why.empty()) {
    pictures_ = false;
    if (rank_ == 0) LOG(WARNING) << "training pictures are off: " << why;
  }

  LOG(INFO) << "data: " << data_->path() << " (" << data_->size() << " samples, " << spec.describe() << ")";
  LOG(INFO) << "generator: " << gen_cfg_.arch << ", " << models::count_parameters(*gen_) << " parameters; encoder: "
            << enc_->describe();
  LOG(INFO) << "world: " << world_ << " rank(s) over " << comm_.backend() << " on " << device_.str() << ", "
            << torch::get_num_threads() << " thread(s) per rank; per step " << classes_per_step_ << " class(es) x " << cfg_.batch.gen_per_class
            << " generated, " << cfg_.batch.pos_per_class << " positives, " << cfg_.batch.unc_per_class << " unconditional";
  LOG(INFO) << "precision: " << precision.reason;
  // Step times are comparable across machines and days only beside the machine's speed now.
  LOG(INFO) << "speed reference: " << measure_gemm_reference(device_).describe();
}

int64_t Trainer::resume() {
  std::vector<std::string> incomplete;
  const auto done = ckpt::list_complete(ckpt_root().string(), &incomplete);
  for (const auto& p : incomplete) LOG(WARNING) << "ignoring incomplete checkpoint " << p << " (no valid manifest)";
  std::string dir;
  if (cfg_.checkpoint.resume == "none") {
    DL_REQUIRE(done.empty(), "--run_dir " << cfg_.output.run_dir << " already holds checkpoints (newest: " << done.back().path
                                          << "); pass --resume=auto to continue that run, or choose another --run_dir");
    return 0;
  }
  if (cfg_.checkpoint.resume == "auto") {
    if (done.empty()) {
      LOG(INFO) << "resume=auto: no complete checkpoint in " << ckpt_root().string() << ", starting fresh";
      return 0;
    }
    dir = done.back().path;
  } else {
    dir = cfg_.checkpoint.resume;
  }
  const auto man = ckpt::read_manifest(dir);
  // The model must be the same, and the objective too unless --allow_objective_change; every
  // refused difference is listed at once. Other settings may change (each warned).
  const auto then = ckpt::flat_record(ckpt::typed_record(man));
  std::vector<std::string> allowed;
  const auto refused = resume_conflicts(then, ckpt::flat_record(run_record_), cfg_.checkpoint.allow_objective_change, &allowed);
  if (!refused.empty()) {
    std::string list;
    for (const auto& l : refused) list += "\n  " + l;
    throw UserError("cannot resume from " + dir + ": these settings differ from the checkpoint's (was -> now):" + list +
                    "\nThe model must be the same; objective settings (temperatures, keys, set sizes, guidance) may "
                    "change only with --allow_objective_change.");
  }
  for (const auto& l : allowed) LOG(WARNING) << "resuming with a changed setting " << l;
  const auto stored = ckpt::tensor_names(man);
  for (auto& g : checkpoint_tensors()) {
    // An average asked for only now (--ema_extra_decays grew) starts from the main one.
    if (g.prefix.rfind("ema@", 0) == 0 && !g.tensors.empty() &&
        std::find(stored.begin(), stored.end(), g.prefix + g.tensors.front().first) == stored.end()) {
      LOG(WARNING) << "--ema_extra_decays: " << dir << " holds no average " << g.prefix
                   << "; it starts from the main EMA (--ema_decay) of that checkpoint";
      ckpt::load_weights(dir, man, g.tensors, "ema/");
      continue;
    }
    ckpt::load_weights(dir, man, g.tensors, g.prefix);
  }
  opt_->set_steps(ckpt::read_tensor(dir, man, "optim/steps").item<int64_t>());
  last_checkpoint_ = dir;
  LOG(INFO) << "resumed from " << dir << " (step " << man.step() << ", written by " << man.world_size() << " rank(s))";
  return static_cast<int64_t>(man.cursors().next_step());
}

void Trainer::save(int64_t next_step) {
  Stopwatch sw;
  const std::string dir = (ckpt_root() / ckpt::step_dir_name(next_step)).string();
  std::vector<ckpt::TensorToSave> mine;
  for (const auto& g : checkpoint_tensors()) {
    for (const auto& [name, t] : g.tensors) {
      if (g.sliced) {
        const auto [b, e] = rank_slice(t.numel(), rank_, world_);
        mine.push_back({g.prefix + name, t.detach().flatten().slice(0, b, e), t.sizes().vec(), b});
      } else if (rank_ == 0) {
        mine.push_back({g.prefix + name, t.detach(), {}, 0});
      }
    }
  }
  if (rank_ == 0) mine.push_back({"optim/steps", torch::tensor({opt_->steps()}, torch::kLong), {}, 0});
  // A failed write (ENOSPC, EIO, ...) on any rank must not leave a half-written step behind nor
  // touch the previous checkpoint: every rank reports whether its shard is on disk, and on a
  // failure the step directory is removed and the job ends (fail_checkpoint).
  proto::Manifest part;
  std::string error;
  try {
    for (auto& e : ckpt::write_shard(dir, rank_, mine)) *part.add_tensors() = std::move(e);
  } catch (const std::exception& e) {
    error = e.what();
  }
  const bool shard_ok = error.empty();
  if (!agree_all_ok(shard_ok)) fail_checkpoint(dir, next_step, error);
  const std::string bytes = part.SerializeAsString();
  auto local = torch::from_blob(const_cast<char*>(bytes.data()), {static_cast<int64_t>(bytes.size())}, torch::kUInt8).clone();
  std::vector<int64_t> counts;
  auto all = comm_.all_gather_varying(local.to(device_), &counts).to(torch::kCPU);
  if (cfg_.checkpoint.test_pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(cfg_.checkpoint.test_pause_ms));
  if (rank_ == 0) {
    proto::Manifest man;
    int64_t at = 0;
    for (int64_t c : counts) {
      proto::Manifest p;
      DL_CHECK(p.ParseFromArray(all.data_ptr<uint8_t>() + at, static_cast<int>(c)), "gathered tensor index unreadable");
      for (auto& e : *p.mutable_tensors()) *man.add_tensors() = std::move(e);
      at += c;
    }
    man.set_step(next_step);
    man.set_world_size(world_);
    *man.mutable_config() = run_record_;
    for (int64_t n : data_->class_counts()) man.mutable_config()->add_class_counts(n);  // the sampler's class prior
    man.mutable_cursors()->set_seed(cfg_.seed);
    man.mutable_cursors()->set_next_step(next_step);
    man.mutable_cursors()->set_samples_seen(static_cast<uint64_t>(next_step) * classes_per_step_ * cfg_.batch.gen_per_class);
    try {
      ckpt::commit_manifest(dir, man);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  // In place of a barrier: every rank learns whether the manifest was committed.
  if (!agree_all_ok(error.empty())) fail_checkpoint(dir, next_step, error);
  if (rank_ == 0) {
    // Pruning old checkpoints is housekeeping: a failure is a warning.
    try {
      for (const auto& p : ckpt::prune(ckpt_root().string(), cfg_.checkpoint.keep_last, cfg_.checkpoint.keep_every))
        LOG(INFO) << "removed old checkpoint " << p;
    } catch (const std::exception& e) {
      LOG(WARNING) << "could not remove old checkpoints: " << e.what();
    }
  }
  last_checkpoint_ = dir;
  LOG(INFO) << "checkpoint " << dir << " committed in " << sw.seconds() << " s";
}

std::vector<TensorGroup> Trainer::checkpoint_tensors() {
  std::vector<TensorGroup> groups{{"model/", named_, false}, {"ema/", {}, false}, {"optim/m/", {}, true}, {"optim/v/", {}, true}};
  for (size_t i = 0; i < params_.size(); ++i) {
    groups[1].tensors.emplace_back(param_names_[i], ema_->shadow()[i]);
    groups[2].tensors.emplace_back(param_names_[i], opt_->exp_avg()[i]);
    groups[3].tensors.emplace_back(param_names_[i], opt_->exp_avg_sq()[i]);
  }
  for (const auto& e : extra_emas_) {
    groups.push_back({ema_group_prefix(e->decay()), {}, false});
    for (size_t i = 0; i < params_.size(); ++i) groups.back().tensors.emplace_back(param_names_[i], e->shadow()[i]);
  }
  return groups;
}

int Trainer::agreed_stop_signal() {
  // The signal may reach ranks at different times: every rank stops at the same step.
  auto stop = torch::tensor({static_cast<int64_t>(stop_signal())}, torch::kLong).to(device_);
  comm_.all_reduce_max(stop);
  return static_cast<int>(stop.item<int64_t>());
}

bool Trainer::agree_all_ok(bool ok) {
  failed_rank_ = comm::lowest_failed_rank(comm_, ok);
  return failed_rank_ < 0;
}

// Ends the job after a failed checkpoint write with one line, from the lowest failing rank,
// once rank 0 has removed the step directory (every rank's shard and temporary files). The run
// is not continued: a full or failing disk rarely heals by itself, and training on without
// checkpoints would risk every step after the last one; the previous checkpoint is complete and
// --resume=auto continues from it once the disk is fixed.
void Trainer::fail_checkpoint(const std::string& dir, int64_t next_step, const std::string& error) {
  std::string removed;
  if (rank_ == 0) {
    const std::string why = ckpt::discard_step(dir);
    removed = why.empty() ? "its partial files were removed" : "its partial files could not all be removed (" + why + ")";
  }
  comm_.barrier();  // the directory is gone before any rank reports
  if (rank_ == failed_rank_) {
    throw UserError("checkpoint of step " + std::to_string(next_step) + " failed on rank " + std::to_string(rank_) +
                    ": " + error + (rank_ == 0 ? "; " + removed : "; the step directory " + dir + " was removed") +
                    "; the newest complete checkpoint is " + last_checkpoint_ +
                    " (free space or fix the file system, then relaunch with --resume=auto)");
  }
  // The failing rank's error ends the job (MPI_Abort); wait for it here rather than print a
  // second line. Should the abort not come, the collective watchdog ends this rank.
  comm_.barrier();
  throw UserError("checkpoint of step " + std::to_string(next_step) + " failed on rank " + std::to_string(failed_rank_));
}

void Trainer::step(int64_t t) {
  // Named by the collective watchdog if a collective of this step times out: step t + 1, as the
  // log lines and checkpoint names count (0 is the start-up).
  comm_.set_step(t + 1);
  Stopwatch sw;
  const StepSchedule sched = schedule(cfg_, data_->spec().num_classes, t);
  // This rank's slice of the step's real rows (drawn from (seed, t) like everything else).
  auto batch = loader_ ? loader_->next()
                       : data::load_step(*data_, cfg_.seed, step_request(step_ctx_, t, sched.plan), rank_, world_);
  DL_CHECK(batch.step == static_cast<uint64_t>(t), "loader delivered step " << batch.step << " for step " << t);
  phases_.add("data", sw.seconds());
  const StepStats stats = run_step(step_ctx_, t, sched, batch, &phases_);
  const drift::TotalLoss& total = stats.total;

  sw.reset();
  buckets_->synchronize();
  phases_.add("communication", sw.seconds());

  sw.reset();
  const double gnorm = clip_grad_norm(params_, cfg_.optim.grad_clip);
  if (!std::isfinite(total.value) || !std::isfinite(gnorm)) {
    throw std::runtime_error("non-finite " + std::string(std::isfinite(total.value) ? "gradient norm" : "loss") +
                             " at step " + std::to_string(t) + " (loss " + std::to_string(total.value) + ", gradient norm " +
                             std::to_string(gnorm) + "); no update was applied. The last good checkpoint is " +
                             last_checkpoint_ + ". Try a lower --lr or a larger --grad_clip.");
  }
  if (sched.restart_moments) opt_->reset_moments();
  opt_->step(sched.lr);
  ema_->update(params_);
  for (auto& e : extra_emas_) e->update(params_);
  phases_.add("optimizer", sw.seconds());

  log_->add(total, gnorm);
}

data::StepRequest Trainer::request(uint64_t t) {
  // The loader's thread, ahead of the step: the schedule is pure, so step() recomputes the same plan.
  const int64_t step = static_cast<int64_t>(t);
  return step_request(step_ctx_, step, schedule(cfg_, data_->spec().num_classes, step).plan);
}

// Best effort: a picture that cannot be made or written is a warning, and training goes on.
void Trainer::write_picture(int64_t step, const std::string& name) {
  if (rank_ != 0 || !pictures_) return;
  try {
    draw_picture(step, name);
  } catch (const std::exception& e) {
    LOG(WARNING) << "step " << step << ": training picture " << name << " not written (" << e.what()
                 << "); training continues";
  }
}

void Trainer::draw_picture(int64_t step, const std::string& name) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) ema_gen_->named_parameters()[param_names_[i]].copy_(ema_->shadow()[i]);
  const auto& spec = data_->spec();
  std::vector<int64_t> labels;
  int cols = 0;
  const bool images = spec.decoded_shape().size() == 3;
  if (images && spec.num_classes > 0) {
    const int64_t shown = std::min<int64_t>(cfg_.output.picture_classes, spec.num_classes);
    for (int64_t c = 0; c < shown; ++c) labels.insert(labels.end(), 8, c);
    cols = 8;
  } else {
    const int64_t count = images ? 64 : 2000;
    for (int64_t i = 0; i < count; ++i) labels.push_back(spec.num_classes > 0 ? i % spec.num_classes : ema_gen_->null_class());
  }
  auto lab = torch::tensor(labels, torch::kLong);
  auto samples = models::generate(*ema_gen_, cfg_.seed, rng::Stream::kSample, 0, 0, lab,
                                   torch::full({lab.size(0)}, cfg_.output.picture_alpha), 256, device_);
  torch::Tensor reference;
  if (!images) {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(data_->size(), 4000); ++i) idx.push_back(i);
    reference = data_->read(idx);
  }
  const std::string path = (fs::path(cfg_.output.run_dir) / name).string();
  write_png(path, data::picture(spec, samples, reference, cols,
                                "drift_train, step " + std::to_string(step) + " (EMA weights)"));
  LOG(INFO) << "step " << step << ": samples written to " << path;
}

int Trainer::run() {
  build();
  install_stop_handlers();
  int64_t start = resume();
  if (start >= cfg_.steps) {
    LOG(INFO) << "nothing to do: the checkpoint is at step " << start << " and --steps is " << cfg_.steps;
    return 0;
  }
  if (cfg_.runtime.prefetch > 0) {
    data::LoaderOptions lo;
    lo.seed = cfg_.seed;
    lo.rank = rank_;
    lo.world = world_;
    lo.depth = static_cast<int>(cfg_.runtime.prefetch);
    lo.first_step = static_cast<uint64_t>(start);
    loader_ = std::make_unique<data::PrefetchLoader>(data_, lo, [this](uint64_t t) { return request(t); });
  }
  Stopwatch run_clock;
  log_.emplace(cfg_.objective, classes_per_step_ * cfg_.batch.gen_per_class);
  for (int64_t t = start; t < cfg_.steps; ++t) {
    step(t);
    const int64_t done = t + 1;
    const bool last = done == cfg_.steps;
    comm::maybe_check_sync(comm_, *gen_, done, cfg_.runtime.check_sync_every);
    if (done % cfg_.output.log_every == 0 || last) {
      const auto row = log_->close(done, cfg_.steps, learning_rate(t, cfg_.optim.schedule), phases_);
      metrics_->log(done, row.values);
      LOG(INFO) << row.line;
    }
    const int sig = agreed_stop_signal();
    if (sig != 0 || done % cfg_.checkpoint.every == 0 || last) save(done);
    if (cfg_.output.image_every > 0 && done % cfg_.output.image_every == 0 && !last)
      write_picture(done, "samples_step" + std::to_string(done) + ".png");
    if (sig != 0) {
      if (rank_ == 0) write_stop_marker(cfg_.output.run_dir, sig, " after step " + std::to_string(done));
      LOG(WARNING) << "stopped by signal " << sig << " after step " << done << "; resume with --resume=auto";
      return 0;
    }
  }
  if (rank_ == 0) clear_stop_marker(cfg_.output.run_dir);
  write_picture(cfg_.steps, "samples.png");
  LOG(INFO) << "training finished: " << cfg_.steps - start << " steps in " << ProgressBar::format_duration(run_clock.seconds());
  return 0;
}

}  // namespace

int run_training(const TrainConfig& config) {
  const auto& topo = comm::init_topology();
  validate(config, topo.world_size);  // before the communicator: its options come from the config
  comm::CommOptions options;
  options.watchdog.timeout_s = config.runtime.collective_timeout;
  options.watchdog.heartbeat_dir = (fs::path(config.output.run_dir) / "watchdog").string();
  auto comm = comm::make_communicator(topo, config.runtime.backend, options);
  Trainer trainer(*comm, config);
  return trainer.run();
}

}  // namespace driftlab
