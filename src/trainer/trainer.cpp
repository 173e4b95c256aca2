// The drifting training loop (see trainer.h for the data flow).
#include "trainer/trainer.h"

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>
#include <thread>

#include "common/check.h"            // DL_REQUIRE, UserError
#include "common/progress.h"         // ProgressBar::format_duration
#include "common/rng.h"              // counter-based draws
#include "common/timer.h"            // Stopwatch, PhaseTimes
#include "common/tool_main.h"        // project_flag_values (the resolved config)
#include "data/reader.h"             // ShardSet
#include "data/loader.h"             // the global per-step draw of real samples, prefetching
#include "dist/communicator.h"       // Communicator
#include "dist/drift_reducer.h"      // CommunicatorReducer
#include "dist/grad_buckets.h"       // GradientBuckets
#include "dist/replica_sync.h"       // broadcast_module, maybe_check_sync
#include "dist/topology.h"           // topology()
#include "drift/features.h"          // feature keys, total_loss
#include "models/encoders.h"         // make_frozen_encoder
#include "models/flags.h"            // --gen_* / --encoder flags
#include "models/generators.h"       // make_generator, draw_generator_inputs
#include "sampler/sampling.h"        // generate, picture
#include "trainer/checkpoint.h"      // sharded checkpoints
#include "trainer/metrics.h"         // metrics.jsonl + TensorBoard events
#include "trainer/optim.h"           // AdamW, EMA, clipping, schedule
#include "trainer/signals.h"         // graceful stop
#include "trainer/step_plan.h"       // classes, alphas, rank slices

DEFINE_string(data, "", "training data set: a folder of driftlab HDF5 shards (drift_data writes them), one shard or a glob");
DEFINE_string(run_dir, "runs/default", "where checkpoints, metrics.jsonl, TensorBoard events and pictures go");
DEFINE_int64(steps, 2000, "total training steps (a resumed run continues up to this step)");
DEFINE_uint64(seed, 0, "seed of every random draw (classes, alpha, noise, data): same seed, same run on any world size");
DEFINE_int64(num_classes_per_step, 1, "classes per step, each its own drift problem (capped at the data set's class count)");
DEFINE_int64(gen_per_class, 256, "generated samples per class per step (split across ranks)");
DEFINE_int64(pos_per_class, 256, "real samples (positives) per class per step");
DEFINE_int64(unc_per_class, 0, "unconditional real samples per class appended to the negatives for guidance (CFG); 0: no guidance");
DEFINE_double(lr, 1e-3, "AdamW learning rate after warmup");
DEFINE_int64(warmup_steps, 0, "linear learning-rate warmup steps");
DEFINE_string(lr_decay, "none", "learning-rate decay after warmup: none (constant, the paper's recipe), cosine or linear, "
              "reaching --lr x --lr_min_frac at --steps");
DEFINE_double(lr_min_frac, 0.0, "final learning rate of --lr_decay as a fraction of --lr");
DEFINE_double(beta1, 0.9, "AdamW beta1");
DEFINE_double(beta2, 0.95, "AdamW beta2");
DEFINE_double(weight_decay, 0.0, "AdamW decoupled weight decay");
DEFINE_double(grad_clip, 2.0, "clip the global gradient norm to this (0: off)");
DEFINE_double(ema_decay, 0.999, "EMA decay of the weights (the sampler uses the EMA weights by default)");
DEFINE_double(alpha_max, 4.0, "guidance: alpha is drawn in [1, alpha_max] per class");
DEFINE_double(alpha_power, 3.0, "guidance: alpha density proportional to alpha^-alpha_power");
DEFINE_double(alpha_one_frac, 0.0, "guidance: share of classes trained with alpha = 1");
DEFINE_string(taus, "0.02,0.05,0.2", "drift kernel temperatures, comma separated");
DEFINE_bool(drift_floor, true, "affinity floor A = sqrt(max(a_row a_col, 1e-6)) as in the reference code");
DEFINE_string(drift_path, "auto", "drift kernel: auto (by memory), dense or tiled");
DEFINE_bool(keys_per_location, true, "image encoders: per-location drift keys");
DEFINE_bool(keys_patch, true, "image encoders: 2x2 and 4x4 patch mean/std keys");
DEFINE_int64(log_every, 50, "log a metrics row every this many steps");
DEFINE_int64(image_every, 500, "write a picture of samples every this many steps (0: only at the end)");
DEFINE_int64(ckpt_every, 500, "commit a checkpoint every this many steps (and at the end)");
DEFINE_int32(keep_last, 3, "keep the newest this many checkpoints");
DEFINE_int64(keep_every, 0, "also keep every checkpoint whose step is a multiple of this (0: none)");
DEFINE_string(resume, "none", "auto: continue from the newest complete checkpoint in --run_dir/checkpoints (start fresh if none); "
              "none: start fresh (refused when --run_dir already has checkpoints); or a step directory");
DEFINE_int32(threads, 0, "intra-op threads per rank (0: $DRIFTLAB_THREADS, else cores / ranks on the node)");
DEFINE_string(backend, "auto", "communicator: auto (NCCL with CUDA, else MPI), mpi or nccl");
DEFINE_int32(picture_classes, 10, "pictures: classes shown (8 samples each) for class-conditional image data");
DEFINE_double(picture_alpha, 1.0, "pictures: guidance scale of the samples drawn");
DEFINE_int64(prefetch, 2, "steps of real data prepared ahead by a background thread (0: none)");
DEFINE_int64(test_pause_in_checkpoint_ms, 0, "testing only: sleep this long after the shards and before the manifest");

namespace driftlab {
namespace {

namespace fs = std::filesystem;

std::vector<double> parse_taus(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    DL_REQUIRE(end && *end == '\0' && !item.empty() && v > 0 && std::isfinite(v),
               "--taus: expected positive numbers separated by commas, got '" << s << "'");
    out.push_back(v);
  }
  DL_REQUIRE(!out.empty(), "--taus: at least one temperature is needed");
  return out;
}

std::string format_number(double v, int precision) {
  std::ostringstream os;
  os.precision(precision);
  os << v;
  return os.str();
}

std::string join(const std::vector<double>& v, int precision = 3) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + format_number(v[i], precision);
  return out;
}

// Rows of every rank gathered (rank order) and put back in class-major order: the gathered
// block of rank r is [K, n_r, ...]; the result is [K, N, ...] flattened to [K * N, ...].
torch::Tensor gather_class_major(dist::Communicator& comm, const torch::Tensor& local, int64_t classes) {
  if (comm.world_size() == 1) return local.detach();
  std::vector<int64_t> counts;
  auto all = comm.all_gather_varying(local.detach().contiguous(), &counts);
  std::vector<torch::Tensor> parts;
  int64_t at = 0;
  for (int64_t c : counts) {
    auto block = all.slice(0, at, at + c);
    auto shape = block.sizes().vec();
    shape[0] = c / classes;
    shape.insert(shape.begin(), classes);
    parts.push_back(block.reshape(shape));
    at += c;
  }
  auto out = torch::cat(parts, 1);
  auto shape = out.sizes().vec();
  shape[1] *= shape[0];
  shape.erase(shape.begin());
  return out.reshape(shape);
}

// Rows [begin, end) of a global class-major list, each rank reading and encoding its own slice,
// then gathered so every rank holds all of them in order.
std::vector<torch::Tensor> gather_in_order(dist::Communicator& comm, const std::vector<torch::Tensor>& local) {
  std::vector<torch::Tensor> out;
  for (const auto& t : local) out.push_back(comm.world_size() == 1 ? t : comm.all_gather_varying(t.contiguous()));
  return out;
}

class Trainer {
 public:
  explicit Trainer(dist::Communicator& comm) : comm_(comm), reducer_(comm) {}
  int run();

 private:
  void build();
  int64_t resume();
  void step(int64_t t);
  void save(int64_t next_step);
  void write_picture(int64_t step, const std::string& name);
  std::vector<torch::Tensor> encode(const torch::Tensor& x, bool grad);
  std::vector<drift::FeatureKey> make_keys(const std::vector<torch::Tensor>& gen, const std::vector<torch::Tensor>& gen_all,
                                           const std::vector<torch::Tensor>& pos, const std::vector<torch::Tensor>& unc,
                                           int64_t self_offset, const torch::Tensor& unc_weight, int64_t classes);
  fs::path ckpt_root() const { return fs::path(FLAGS_run_dir) / "checkpoints"; }

  dist::Communicator& comm_;
  dist::CommunicatorReducer reducer_;
  int rank_ = 0, world_ = 1;
  torch::Device device_ = torch::kCPU;
  std::shared_ptr<data::ShardSet> data_;
  std::unique_ptr<data::PrefetchLoader> loader_;
  data::StepRequest request(uint64_t t) const;
  models::GeneratorConfig gen_cfg_;
  models::GeneratorPtr gen_, ema_gen_;
  models::EncoderPtr enc_;
  bool identity_encoder_ = true;
  std::vector<torch::Tensor> params_;
  std::vector<std::pair<std::string, torch::Tensor>> named_;  // parameters, then buffers
  std::vector<std::string> param_names_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<Ema> ema_;
  LrSchedule lr_schedule_;
  std::unique_ptr<dist::GradientBuckets> buckets_;
  std::unique_ptr<MetricsWriter> metrics_;
  drift::FieldOptions field_;
  drift::Workspace drift_ws_;  // scratch of the drift kernel, reused across steps
  GuidanceOptions guidance_;
  int64_t classes_per_step_ = 1;
  PhaseTimes phases_;
  // Accumulated between log rows.
  double loss_sum_ = 0, grad_norm_sum_ = 0;
  std::vector<double> drift_norm_sum_;
  std::map<std::string, std::pair<double, int64_t>> spread_sum_;  // per key: sum of spread ratios, steps
  std::vector<std::string> key_order_;                            // keys in the order of the loss
  int64_t logged_steps_ = 0;
  std::string last_checkpoint_ = "none";
};

void Trainer::build() {
  rank_ = comm_.rank();
  world_ = comm_.world_size();
  device_ = comm_.device();
  DL_REQUIRE(!FLAGS_data.empty(), "--data is required: a data set folder written by drift_data (see --help)");
  DL_REQUIRE(FLAGS_steps >= 1, "--steps must be >= 1, got " << FLAGS_steps);
  DL_REQUIRE(FLAGS_gen_per_class >= 2, "--gen_per_class must be >= 2 (a generated sample needs other negatives), got " << FLAGS_gen_per_class);
  DL_REQUIRE(FLAGS_gen_per_class >= world_, "--gen_per_class (" << FLAGS_gen_per_class << ") must be at least the number of ranks (" << world_ << ")");
  DL_REQUIRE(FLAGS_pos_per_class >= 1, "--pos_per_class must be >= 1, got " << FLAGS_pos_per_class);
  DL_REQUIRE(FLAGS_unc_per_class >= 0, "--unc_per_class must be >= 0, got " << FLAGS_unc_per_class);
  DL_REQUIRE(FLAGS_log_every >= 1 && FLAGS_ckpt_every >= 1, "--log_every and --ckpt_every must be >= 1");
  lr_schedule_ = LrSchedule{FLAGS_lr, FLAGS_warmup_steps, FLAGS_lr_decay, FLAGS_steps, FLAGS_lr_min_frac};
  validate(lr_schedule_);
  if (FLAGS_threads > 0) torch::set_num_threads(FLAGS_threads);
  else if (const char* env = std::getenv("DRIFTLAB_THREADS"); env && std::atoi(env) > 0) torch::set_num_threads(std::atoi(env));

  data_ = data::ShardSet::open(FLAGS_data);
  const auto& spec = data_->spec();
  classes_per_step_ = std::min<int64_t>(FLAGS_num_classes_per_step, std::max<int64_t>(spec.num_classes, 1));

  gen_cfg_ = models::generator_config_from_flags(spec.decoded_shape(), spec.num_classes);
  gen_ = models::make_generator(gen_cfg_);
  ema_gen_ = models::make_generator(gen_cfg_);
  const int64_t channels = spec.decoded_shape().size() == 3 ? spec.decoded_shape()[0] : 0;
  const auto enc_cfg = models::encoder_config_from_flags(channels);
  identity_encoder_ = enc_cfg.kind == "identity";
  enc_ = models::make_frozen_encoder(enc_cfg);
  gen_->to(device_);
  ema_gen_->to(device_);
  enc_->to(device_);

  for (auto& p : gen_->named_parameters()) {
    params_.push_back(p.value());
    param_names_.push_back(p.key());
  }
  named_ = dist::replica_tensors(*gen_);
  // Every rank starts from rank 0's weights (they are seeded identically anyway; this makes it a rule).
  dist::broadcast_module(comm_, *gen_, 0);
  AdamWOptions ao;
  ao.beta1 = FLAGS_beta1;
  ao.beta2 = FLAGS_beta2;
  ao.weight_decay = FLAGS_weight_decay;
  opt_ = std::make_unique<AdamW>(params_, ao);
  ema_ = std::make_unique<Ema>(params_, FLAGS_ema_decay);
  buckets_ = std::make_unique<dist::GradientBuckets>(comm_, params_);

  field_.taus = parse_taus(FLAGS_taus);
  field_.floor = FLAGS_drift_floor;
  field_.path = drift::parse_path(FLAGS_drift_path);
  field_.workspace = &drift_ws_;
  guidance_.alpha_max = FLAGS_alpha_max;
  guidance_.alpha_power = FLAGS_alpha_power;
  guidance_.alpha_one_frac = FLAGS_alpha_one_frac;
  drift_norm_sum_.assign(field_.taus.size(), 0.0);
  metrics_ = std::make_unique<MetricsWriter>(FLAGS_run_dir, rank_ == 0);

  LOG(INFO) << "data: " << data_->path() << " (" << data_->size() << " samples, " << spec.describe() << ")";
  LOG(INFO) << "generator: " << gen_cfg_.arch << ", " << models::count_parameters(*gen_) << " parameters; encoder: "
            << enc_->describe();
  LOG(INFO) << "world: " << world_ << " rank(s) over " << comm_.backend() << ", " << torch::get_num_threads()
            << " thread(s) per rank; per step " << classes_per_step_ << " class(es) x " << FLAGS_gen_per_class
            << " generated, " << FLAGS_pos_per_class << " positives, " << FLAGS_unc_per_class << " unconditional";
}

int64_t Trainer::resume() {
  std::vector<std::string> incomplete;
  const auto done = ckpt::list_complete(ckpt_root().string(), &incomplete);
  for (const auto& p : incomplete) LOG(WARNING) << "ignoring incomplete checkpoint " << p << " (no valid manifest)";
  std::string dir;
  if (FLAGS_resume == "none") {
    DL_REQUIRE(done.empty(), "--run_dir " << FLAGS_run_dir << " already holds checkpoints (newest: " << done.back().path
                                          << "); pass --resume=auto to continue that run, or choose another --run_dir");
    return 0;
  }
  if (FLAGS_resume == "auto") {
    if (done.empty()) {
      LOG(INFO) << "resume=auto: no complete checkpoint in " << ckpt_root().string() << ", starting fresh";
      return 0;
    }
    dir = done.back().path;
  } else {
    dir = FLAGS_resume;
  }
  const auto man = ckpt::read_manifest(dir);
  // Flags that shape the model or the objective must match; others may change (warned).
  const auto now = project_flag_values();
  for (const auto& [k, v] : man.config().flags()) {
    auto it = now.find(k);
    if (it == now.end() || it->second == v || k == "resume" || k == "steps" || k == "threads") continue;
    if (k.rfind("gen_", 0) == 0 || k == "encoder" || k.rfind("enc_", 0) == 0)
      throw UserError("cannot resume from " + dir + ": --" + k + " was '" + v + "' there and is '" + it->second +
                      "' now (the model must be the same)");
    LOG(WARNING) << "resuming with --" << k << "=" << it->second << " (the checkpoint was written with " << v << ")";
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : named_) {
    auto v = ckpt::read_tensor(dir, man, "model/" + name);
    DL_REQUIRE(v.sizes() == t.sizes(), "checkpoint " << dir << ": model/" << name << " has shape " << v.sizes()
                                                     << ", the model built from the flags has " << t.sizes());
    t.copy_(v);
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    ema_->shadow()[i].copy_(ckpt::read_tensor(dir, man, "ema/" + param_names_[i]));
    opt_->exp_avg()[i].copy_(ckpt::read_tensor(dir, man, "optim/m/" + param_names_[i]));
    opt_->exp_avg_sq()[i].copy_(ckpt::read_tensor(dir, man, "optim/v/" + param_names_[i]));
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
  if (rank_ == 0) {
    for (const auto& [name, t] : named_) mine.push_back({"model/" + name, t.detach(), {}, 0});
    for (size_t i = 0; i < params_.size(); ++i) mine.push_back({"ema/" + param_names_[i], ema_->shadow()[i], {}, 0});
    mine.push_back({"optim/steps", torch::tensor({opt_->steps()}, torch::kLong), {}, 0});
  }
  // Optimizer state is identical on every rank; each writes its 1/W slice of every tensor.
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const auto& [prefix, t] : {std::pair<std::string, torch::Tensor>{"optim/m/", opt_->exp_avg()[i]},
                                    std::pair<std::string, torch::Tensor>{"optim/v/", opt_->exp_avg_sq()[i]}}) {
      const auto [b, e] = rank_slice(t.numel(), rank_, world_);
      mine.push_back({prefix + param_names_[i], t.detach().flatten().slice(0, b, e), t.sizes().vec(), b});
    }
  }
  proto::Manifest part;
  for (auto& e : ckpt::write_shard(dir, rank_, mine)) *part.add_tensors() = std::move(e);
  const std::string bytes = part.SerializeAsString();
  auto local = torch::from_blob(const_cast<char*>(bytes.data()), {static_cast<int64_t>(bytes.size())}, torch::kUInt8).clone();
  std::vector<int64_t> counts;
  auto all = comm_.all_gather_varying(local.to(device_), &counts).to(torch::kCPU);
  if (FLAGS_test_pause_in_checkpoint_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_test_pause_in_checkpoint_ms));
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
    auto flags = project_flag_values();
    // The resolved model description overrides the flags' defaults (shape and classes come
    // from the data set), so the sampler rebuilds exactly this model.
    for (const auto& [k, v] : gen_cfg_.to_map()) flags[k] = v;
    for (const auto& [k, v] : flags) (*man.mutable_config()->mutable_flags())[k] = v;
    man.mutable_config()->set_model_description(gen_cfg_.to_text());
    for (const auto& [k, v] : sampler::spec_to_map(data_->spec())) (*man.mutable_config()->mutable_dataset())[k] = v;
    man.mutable_cursors()->set_seed(FLAGS_seed);
    man.mutable_cursors()->set_next_step(next_step);
    man.mutable_cursors()->set_samples_seen(static_cast<uint64_t>(next_step) * classes_per_step_ * FLAGS_gen_per_class);
    ckpt::commit_manifest(dir, man);
    for (const auto& p : ckpt::prune(ckpt_root().string(), FLAGS_keep_last, FLAGS_keep_every))
      LOG(INFO) << "removed old checkpoint " << p;
  }
  comm_.barrier();
  last_checkpoint_ = dir;
  LOG(INFO) << "checkpoint " << dir << " committed in " << sw.seconds() << " s";
}

std::vector<torch::Tensor> Trainer::encode(const torch::Tensor& x, bool grad) {
  if (identity_encoder_) return {};
  torch::AutoGradMode mode(grad);
  return enc_->forward(x);
}

std::vector<drift::FeatureKey> Trainer::make_keys(const std::vector<torch::Tensor>& gen, const std::vector<torch::Tensor>& gen_all,
                                                  const std::vector<torch::Tensor>& pos, const std::vector<torch::Tensor>& unc,
                                                  int64_t self_offset, const torch::Tensor& unc_weight, int64_t classes) {
  // gen[0] is the raw output; gen[1..] the encoder's feature maps.
  std::vector<drift::FeatureKey> keys;
  drift::KeyOptions ko;
  ko.per_location = FLAGS_keys_per_location;
  ko.patch2 = ko.patch4 = FLAGS_keys_patch;
  for (size_t m = 0; m < gen.size(); ++m) {
    drift::GroupedFeatures f;
    f.gen = gen[m];
    f.gen_all = gen_all[m];
    f.self_offset = self_offset;
    f.pos = pos[m];
    if (!unc.empty()) {
      f.unc = unc[m];
      f.unc_weight = unc_weight;
    }
    f.classes = classes;
    if (m == 0) {
      if (gen[0].dim() == 2) keys.push_back(drift::vector_key(f, "x"));
      else for (auto& k : drift::output_keys(f, "x")) keys.push_back(std::move(k));
    } else {
      for (auto& k : drift::feature_map_keys(f, "f" + std::to_string(m - 1), ko)) keys.push_back(std::move(k));
    }
  }
  return keys;
}

void Trainer::step(int64_t t) {
  Stopwatch sw;
  const auto plan = plan_step(FLAGS_seed, t, data_->spec().num_classes, classes_per_step_, guidance_);
  const int64_t K = static_cast<int64_t>(plan.classes.size()), N = FLAGS_gen_per_class;
  const bool guided = FLAGS_unc_per_class > 0 && data_->spec().num_classes > 0;
  const auto [b, e] = rank_slice(N, rank_, world_);
  const int64_t n = e - b;

  // Generator inputs of this rank's rows: row i of class slot k is global sample k*N + b + i.
  std::vector<torch::Tensor> noise, style;
  std::vector<int64_t> labels;
  std::vector<float> alphas;
  for (int64_t k = 0; k < K; ++k) {
    auto in = models::draw_generator_inputs(*gen_, FLAGS_seed, rng::Stream::kNoise, t, k * N + b, n);
    noise.push_back(in.noise);
    if (in.style.defined()) style.push_back(in.style);
    const int64_t label = data_->spec().num_classes > 0 ? plan.classes[k] : gen_->null_class();
    labels.insert(labels.end(), n, label);
    alphas.insert(alphas.end(), n, guided ? static_cast<float>(plan.alphas[k]) : 1.0f);
  }
  // This rank's slice of the step's real rows (drawn from (seed, t) like everything else).
  auto batch = loader_ ? loader_->next() : data::load_step(*data_, FLAGS_seed, request(t), rank_, world_);
  DL_CHECK(batch.step == static_cast<uint64_t>(t), "loader delivered step " << batch.step << " for step " << t);
  phases_.add("data", sw.seconds());

  sw.reset();
  auto x = gen_->forward(torch::cat(noise).to(device_), torch::tensor(labels, torch::kLong).to(device_),
                         torch::tensor(alphas).to(device_), style.empty() ? torch::Tensor() : torch::cat(style).to(device_));
  phases_.add("generator", sw.seconds());

  sw.reset();
  std::vector<torch::Tensor> gen_feats{x};
  for (auto& f : encode(x, true)) gen_feats.push_back(f);
  auto pos_local = batch.positives.to(device_), unc_local = batch.unconditional.to(device_);
  std::vector<torch::Tensor> pos_feats{pos_local}, unc_feats;
  for (auto& f : encode(pos_local, false)) pos_feats.push_back(f);
  if (guided) {
    unc_feats.push_back(unc_local);
    for (auto& f : encode(unc_local, false)) unc_feats.push_back(f);
  }
  phases_.add("encoder", sw.seconds());

  sw.reset();
  std::vector<torch::Tensor> gen_all;
  for (const auto& f : gen_feats) gen_all.push_back(world_ == 1 ? torch::Tensor() : gather_class_major(comm_, f, K));
  pos_feats = gather_in_order(comm_, pos_feats);
  if (guided) unc_feats = gather_in_order(comm_, unc_feats);
  phases_.add("communication", sw.seconds());

  sw.reset();
  torch::Tensor unc_weight;
  if (guided) {
    std::vector<float> w;
    for (double a : plan.alphas) w.push_back(static_cast<float>(drift::cfg_unconditional_weight(a, N, FLAGS_unc_per_class)));
    unc_weight = torch::tensor(w).to(device_);
  }
  auto keys = make_keys(gen_feats, gen_all, pos_feats, unc_feats, b, unc_weight, K);
  auto total = drift::total_loss(keys, field_, &reducer_);
  phases_.add("drift", sw.seconds());

  sw.reset();
  gen_->zero_grad();
  // The loss is this rank's share of the global loss; the gradient sync averages, so scale by W
  // to make the synchronised gradient the gradient of the global loss.
  (total.loss * static_cast<double>(world_)).backward();
  phases_.add("backward", sw.seconds());
  sw.reset();
  buckets_->synchronize();
  phases_.add("communication", sw.seconds());

  sw.reset();
  const double gnorm = clip_grad_norm(params_, FLAGS_grad_clip);
  if (!std::isfinite(total.value) || !std::isfinite(gnorm)) {
    throw std::runtime_error("non-finite " + std::string(std::isfinite(total.value) ? "gradient norm" : "loss") +
                             " at step " + std::to_string(t) + " (loss " + std::to_string(total.value) + ", gradient norm " +
                             std::to_string(gnorm) + "); no update was applied. The last good checkpoint is " +
                             last_checkpoint_ + ". Try a lower --lr or a larger --grad_clip.");
  }
  opt_->step(learning_rate(t, lr_schedule_));
  ema_->update(params_);
  phases_.add("optimizer", sw.seconds());

  loss_sum_ += total.value;
  grad_norm_sum_ += gnorm;
  if (key_order_.empty())
    for (const auto& k : total.keys) key_order_.push_back(k.name);
  for (const auto& k : total.keys) {
    for (size_t i = 0; i < drift_norm_sum_.size(); ++i) drift_norm_sum_[i] += k.field.raw_drift_norm[i] / total.keys.size();
    if (std::isfinite(k.spread)) {
      auto& acc = spread_sum_[k.name];
      acc.first += k.spread;
      ++acc.second;
    }
  }
  ++logged_steps_;
}

data::StepRequest Trainer::request(uint64_t t) const {
  const auto plan = plan_step(FLAGS_seed, t, data_->spec().num_classes, classes_per_step_, guidance_);
  data::StepRequest r;
  r.step = t;
  for (int64_t c : plan.classes) r.classes.push_back(data_->spec().num_classes > 0 ? c : data::kAnyClass);
  r.pos_per_class = FLAGS_pos_per_class;
  r.unc_per_class = data_->spec().num_classes > 0 ? FLAGS_unc_per_class : 0;
  return r;
}

void Trainer::write_picture(int64_t step, const std::string& name) {
  if (rank_ != 0) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) ema_gen_->named_parameters()[param_names_[i]].copy_(ema_->shadow()[i]);
  const auto& spec = data_->spec();
  std::vector<int64_t> labels;
  int cols = 0;
  const bool images = spec.decoded_shape().size() == 3;
  if (images && spec.num_classes > 0) {
    const int64_t shown = std::min<int64_t>(FLAGS_picture_classes, spec.num_classes);
    for (int64_t c = 0; c < shown; ++c) labels.insert(labels.end(), 8, c);
    cols = 8;
  } else {
    const int64_t count = images ? 64 : 2000;
    for (int64_t i = 0; i < count; ++i) labels.push_back(spec.num_classes > 0 ? i % spec.num_classes : ema_gen_->null_class());
  }
  auto lab = torch::tensor(labels, torch::kLong);
  auto samples = sampler::generate(*ema_gen_, FLAGS_seed, rng::Stream::kSample, 0, 0, lab,
                                   torch::full({lab.size(0)}, FLAGS_picture_alpha), 256, device_);
  torch::Tensor reference;
  if (!images) {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(data_->size(), 4000); ++i) idx.push_back(i);
    reference = data_->read(idx);
  }
  const std::string path = (fs::path(FLAGS_run_dir) / name).string();
  write_png(path, sampler::picture(spec, samples, reference, cols));
  LOG(INFO) << "step " << step << ": samples written to " << path;
}

int Trainer::run() {
  build();
  install_stop_handlers();
  int64_t start = resume();
  if (start >= FLAGS_steps) {
    LOG(INFO) << "nothing to do: the checkpoint is at step " << start << " and --steps is " << FLAGS_steps;
    return 0;
  }
  if (FLAGS_prefetch > 0) {
    data::LoaderOptions lo;
    lo.seed = FLAGS_seed;
    lo.rank = rank_;
    lo.world = world_;
    lo.depth = static_cast<int>(FLAGS_prefetch);
    lo.first_step = static_cast<uint64_t>(start);
    loader_ = std::make_unique<data::PrefetchLoader>(data_, lo, [this](uint64_t t) { return request(t); });
  }
  Stopwatch run_clock, log_clock;
  int64_t since_log = 0;
  for (int64_t t = start; t < FLAGS_steps; ++t) {
    step(t);
    ++since_log;
    const int64_t done = t + 1;
    dist::maybe_check_sync(comm_, *gen_, done);
    if (done % FLAGS_log_every == 0 || done == FLAGS_steps) {
      const double secs = log_clock.seconds();
      const double per_s = since_log * classes_per_step_ * FLAGS_gen_per_class / std::max(secs, 1e-9);
      const double eta = (FLAGS_steps - done) * secs / std::max<int64_t>(since_log, 1);
      std::vector<double> dn;
      for (double v : drift_norm_sum_) dn.push_back(v / logged_steps_);
      std::map<std::string, double> row{{"loss", loss_sum_ / logged_steps_},
                                        {"grad_norm", grad_norm_sum_ / logged_steps_},
                                        {"lr", learning_rate(t, lr_schedule_)},
                                        {"samples_per_s", per_s}};
      for (size_t i = 0; i < dn.size(); ++i) row["drift_norm/tau_" + std::to_string(field_.taus[i]).substr(0, 5)] = dn[i];
      // Diversity per key: spread of the generated features over that of the real ones (1: as
      // varied as the data; a collapse shows as a ratio falling toward 0).
      std::string spread_text, low_key;
      double low = std::numeric_limits<double>::infinity();
      for (const auto& name : key_order_) {
        auto it = spread_sum_.find(name);
        if (it == spread_sum_.end() || it->second.second == 0) continue;
        const double v = it->second.first / it->second.second;
        row["spread/" + name] = v;
        if (spread_text.empty()) spread_text = name + " " + format_number(v, 3);
        if (v < low) low = v, low_key = name;
      }
      if (!low_key.empty() && low_key != key_order_.front()) spread_text += ", lowest " + low_key + " " + format_number(low, 3);
      spread_sum_.clear();
      const double total_time = phases_.sum();
      for (const auto& [k, v] : phases_.totals()) row["time_share/" + k] = v / std::max(total_time, 1e-12);
      metrics_->log(done, row);
      LOG(INFO) << "step " << done << "/" << FLAGS_steps << " loss " << row["loss"] << " drift(" << FLAGS_taus << ") "
                << join(dn) << " |g| " << row["grad_norm"] << " lr " << row["lr"] << " " << static_cast<int64_t>(per_s)
                << " samples/s" << (spread_text.empty() ? "" : " spread(gen/real) " + spread_text) << " ETA "
                << ProgressBar::format_duration(eta);
      loss_sum_ = grad_norm_sum_ = 0;
      std::fill(drift_norm_sum_.begin(), drift_norm_sum_.end(), 0.0);
      logged_steps_ = since_log = 0;
      phases_.clear();
      log_clock.reset();
    }
    // Every rank must agree to stop at the same step: the signal may reach ranks at different times.
    auto stop = torch::tensor({static_cast<int64_t>(stop_signal())}, torch::kLong).to(device_);
    comm_.all_reduce_max(stop);
    const int sig = static_cast<int>(stop.item<int64_t>());
    if (sig != 0 || done % FLAGS_ckpt_every == 0 || done == FLAGS_steps) save(done);
    if (FLAGS_image_every > 0 && done % FLAGS_image_every == 0 && done != FLAGS_steps)
      write_picture(done, "samples_step" + std::to_string(done) + ".png");
    if (sig != 0) {
      if (rank_ == 0) {
        std::FILE* f = std::fopen((fs::path(FLAGS_run_dir) / "STOPPED").c_str(), "w");
        if (f) {
          std::fprintf(f, "stopped by signal %d after step %lld\n", sig, static_cast<long long>(done));
          std::fclose(f);
        }
      }
      LOG(WARNING) << "stopped by signal " << sig << " after step " << done << "; resume with --resume=auto";
      return 0;
    }
  }
  if (rank_ == 0) std::filesystem::remove(fs::path(FLAGS_run_dir) / "STOPPED");
  write_picture(FLAGS_steps, "samples.png");
  LOG(INFO) << "training finished: " << FLAGS_steps - start << " steps in " << ProgressBar::format_duration(run_clock.seconds());
  return 0;
}

}  // namespace

int run_training() {
  const auto& topo = dist::init_topology();
  auto comm = dist::make_communicator(topo, FLAGS_backend);
  Trainer trainer(*comm);
  return trainer.run();
}

}  // namespace driftlab
