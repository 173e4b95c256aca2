// Offline sampling jobs (see sampling.h): unit layout, job record, resume, the three output
// formats, the class prior.
#include "sampler/sampling.h"

#include <glog/logging.h>
#include <google/protobuf/text_format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "ckpt/checkpoint.h"
#include "ckpt/run_record.h"
#include "comm/topology.h"
#include "common/check.h"
#include "common/fileio.h"
#include "common/optim.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/signals.h"
#include "common/timer.h"
#include "data/format.h"
#include "data/picture.h"
#include "data/sample_files.h"
#include "data/writer.h"
#include "driftlab_config.h"
#include "models/generators.h"
#include "models/sampling.h"
#include "sampling.pb.h"

namespace driftlab::sampler {
namespace {

namespace fs = std::filesystem;
constexpr const char* kJobFile = "sampling.pbtxt";
constexpr const char* kStageDir = ".parts";   // npz: committed units as shards, until the archive is written
constexpr const char* kMarkDir = ".units";    // png: one marker per committed unit
constexpr const char* kNpzName = "samples.npz";
constexpr int64_t kMaxPicturePoints = 50000;

// Unit k is shard k of the output: the shard format's row rule.
int64_t unit_first(const proto::SamplingJob& job, int k) { return data::shard_first(job.num_samples(), k, job.units()); }

std::string unit_shard_name(const proto::SamplingJob& job, int k) { return data::shard_file_name(k, job.units()); }

std::string marker_name(int k) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "unit-%06d.done", k);
  return buf;
}

// The file whose existence says unit k is committed.
fs::path committed_path(const fs::path& out, const proto::SamplingJob& job, int k) {
  if (job.format() == "h5") return out / unit_shard_name(job, k);
  if (job.format() == "npz") return out / kStageDir / unit_shard_name(job, k);
  return out / kMarkDir / marker_name(k);
}

std::vector<int> pending_units(const fs::path& out, const proto::SamplingJob& job) {
  std::error_code ec;
  std::vector<int> pending;
  for (int k = 0; k < job.units(); ++k)
    if (!fs::exists(committed_path(out, job, k), ec)) pending.push_back(k);
  return pending;
}

// Every unit committed, and for npz the archive written (its staged units are then removed).
bool is_complete(const fs::path& out, const proto::SamplingJob& job) {
  std::error_code ec;
  if (job.format() == "npz") return fs::is_regular_file(out / kNpzName, ec);
  return pending_units(out, job).empty();
}

Precision job_precision(const proto::SamplingJob& job) {
  return job.precision() == "bf16" ? Precision::kBf16 : Precision::kFp32;
}

std::string text_of(const proto::SamplingJob& job) {
  std::string s;
  google::protobuf::TextFormat::PrintToString(job, &s);
  return s;
}

// Every field that determines the contents and differs (the checkpoint's path and the version of
// driftlab that wrote the record do not count: a moved run directory still resumes).
std::vector<std::string> differences(const proto::SamplingJob& want, const proto::SamplingJob& have_record) {
  proto::SamplingJob have = have_record;
  if (have.precision().empty()) have.set_precision("fp32");  // written before mixed precision
  return ckpt::field_differences(have, want, "", {"checkpoint", "driftlab_version", "dataset_id"});
}

// Removes an earlier output (only when it looks like one: our job record, or a shard data set).
void remove_output(const fs::path& out) {
  std::error_code ec;
  if (!fs::exists(out / kJobFile, ec)) {
    for (const auto& e : fs::directory_iterator(out)) {
      const std::string name = e.path().filename().string();
      DL_REQUIRE(e.is_regular_file() && name.rfind("shard-", 0) == 0,
                 out.string() << ": holds '" << name << "', which is neither a sampling output nor a shard; refusing to "
                              << "replace it (even with --force)");
    }
  }
  fs::remove_all(out, ec);
  DL_REQUIRE(!ec, out.string() << ": cannot remove the old output: " << ec.message());
}

// Temporary files of interrupted runs (a partial unit is redone from scratch).
void remove_partials(const fs::path& out) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(out, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find(".partial-") != std::string::npos || (name.size() > 4 && name.substr(name.size() - 4) == ".tmp"))
      fs::remove(it->path(), ec);
  }
}

// Rank 0: makes `out` ready for `job` (fresh, resumed, or replaced with force). Returns a
// message for the log.
std::string prepare_output(const fs::path& out, const proto::SamplingJob& job, const data::DatasetSpec& spec, bool force) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    DL_REQUIRE(fs::is_directory(out, ec), out.string() << ": exists and is not a folder; choose another --out");
    const fs::path rec = out / kJobFile;
    if (fs::exists(rec, ec)) {
      std::ifstream in(rec);
      std::stringstream text;
      text << in.rdbuf();
      proto::SamplingJob have;
      DL_REQUIRE(google::protobuf::TextFormat::ParseFromString(text.str(), &have),
                 rec.string() << ": unreadable job record; remove the folder or pass --force");
      const auto diff = differences(job, have);
      if (diff.empty()) {
        remove_partials(out);
        clear_stop_marker(out.string());
        return is_complete(out, job) ? "complete" : "resume";
      }
      if (!force) {
        std::ostringstream m;
        m << out.string() << " holds the output of a sampling job with other settings (" << rec.string()
          << "; output -> now):";
        for (const auto& d : diff) m << "\n  " << d;
        m << "\nrun with the same flags to continue that job, choose another --out, or pass --force to replace it";
        throw UserError(m.str());
      }
      LOG(WARNING) << out.string() << ": replacing the output of a job with other settings (--force): " << diff.size()
                   << " difference(s), first: " << diff.front();
    } else {
      const bool empty = fs::is_empty(out, ec);
      DL_REQUIRE(empty || force, out.string() << ": already exists and is not a sampling output of this configuration; "
                                             << "pass --force to replace it or choose another --out");
    }
    remove_output(out);
  }
  fs::create_directories(out, ec);
  DL_REQUIRE(!ec, out.string() << ": cannot create the output folder: " << ec.message());
  if (job.format() == "npz") fs::create_directories(out / kStageDir, ec);
  if (job.format() == "png") fs::create_directories(out / kMarkDir, ec);
  DL_REQUIRE(!ec, out.string() << ": cannot create its work folders: " << ec.message());
  write_file_atomic((out / kJobFile).string(), text_of(job));
  if (job.format() == "png") data::write_png_class_list(out.string(), spec);
  return "fresh";
}

// Writes unit k of the job (samples of classes `labels`, generated batch by batch) and commits it.
void write_unit(const fs::path& out, const proto::SamplingJob& job, const data::DatasetSpec& spec, int k,
                models::GeneratorImpl& gen, const std::vector<int64_t>& class_counts, torch::Device device,
                ProgressBar& bar) {
  const int64_t first = unit_first(job, k), n = unit_first(job, k + 1) - first;
  const auto classes = class_of_samples(job.classes(), spec.num_classes > 0 ? gen.config().num_classes : 0,
                                        gen.null_class(), job.sample_seed(), first, n, class_counts);
  const auto labels = torch::tensor(classes, torch::kLong);
  const auto alpha = torch::full({n}, job.alpha());
  const bool labelled = spec.num_classes > 0;
  const std::string partial = ".partial-" + std::to_string(getpid());
  std::unique_ptr<data::ShardFileWriter> shard;
  fs::path final_path = committed_path(out, job, k);
  if (job.format() != "png") {
    data::WriteOptions wo;
    shard = std::make_unique<data::ShardFileWriter>(final_path.string() + partial, spec,
                                                    data::ShardPlacement{k, job.units(), job.num_samples(), job.dataset_id()},
                                                    n, wo);
  }
  for (int64_t at = 0; at < n; at += job.batch_size()) {
    const int64_t rows = std::min<int64_t>(job.batch_size(), n - at);
    auto lab = labels.slice(0, at, at + rows);
    auto x = models::generate(gen, job.sample_seed(), rng::Stream::kSample, 0, first + at, lab,
                              alpha.slice(0, at, at + rows), job.batch_size(), device, job_precision(job));
    if (shard) shard->append_decoded(x, labelled ? lab : torch::Tensor());
    else data::write_png_samples(out.string(), spec, first + at, job.num_samples(), x, lab);
    bar.add(rows);
  }
  if (shard) {
    shard->close();
    fsync_file(shard->path());
    rename_durable(shard->path(), final_path.string());
  } else {
    write_file_atomic(final_path.string(), std::to_string(first) + " " + std::to_string(n) + "\n");
  }
}

// npz: arr_0 and labels streamed from the staged unit shards, then the stage is removed.
void assemble_npz(const fs::path& out, const data::DatasetSpec& spec, int64_t n) {
  auto staged = data::open_sample_set((out / kStageDir).string());
  auto source = [&](int64_t first, int64_t count) {
    std::vector<int64_t> idx(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) idx[static_cast<size_t>(i)] = first + i;
    auto [decoded, labels] = staged->read(idx);
    return std::make_pair(data::encode_samples(spec, decoded), labels);
  };
  Stopwatch sw;
  data::write_npz((out / kNpzName).string(), spec, n, source);  // atomic: written aside, fsync'ed, renamed
  std::error_code ec;
  fs::remove_all(out / kStageDir, ec);
  LOG(INFO) << "wrote " << (out / kNpzName).string() << " (" << n << " samples) in " << sw.seconds() << " s";
}

// "1", "1.5": the guidance scale as a person writes it.
std::string fmt_alpha(double a) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", a);
  return buf;
}

// OUT.png of the first samples: `count` images, or up to 50 000 points. They are generated
// again (sample i is a pure function of its index), not read back, so the picture costs the same
// whatever the size of the output. A side output: failures only warn.
void write_picture(const fs::path& out, const proto::SamplingJob& job, const data::DatasetSpec& spec, int count,
                   models::GeneratorImpl& gen, const std::vector<int64_t>& class_counts, torch::Device device) {
  try {
    const bool images = spec.decoded_shape().size() == 3;
    const int64_t shown = std::min<int64_t>(job.num_samples(), images ? count : kMaxPicturePoints);
    const auto classes = class_of_samples(job.classes(), spec.num_classes > 0 ? gen.config().num_classes : 0,
                                          gen.null_class(), job.sample_seed(), 0, shown, class_counts);
    auto samples = models::generate(gen, job.sample_seed(), rng::Stream::kSample, 0, 0, torch::tensor(classes, torch::kLong),
                                    torch::full({shown}, job.alpha()), job.batch_size(), device, job_precision(job));
    const int cols = spec.num_classes > 0 && job.classes() == "all"
                         ? static_cast<int>(std::min<int64_t>(spec.num_classes, shown)) : 0;
    const std::string png = out.string() + ".png";
    write_png(png, data::picture(spec, samples, torch::Tensor(), cols, "drift_sample, alpha " + fmt_alpha(job.alpha())));
    LOG(INFO) << "picture of the first " << shown << " samples: " << png;
  } catch (const std::exception& e) {
    LOG(WARNING) << "no picture written for " << out.string() << ": " << e.what();
  }
}

}  // namespace

void validate(const SampleConfig& c) {
  DL_REQUIRE(c.num_samples >= 1, "--num_samples must be >= 1, got " << c.num_samples);
  DL_REQUIRE(!c.out.empty(), "--out is required: the output folder");
  DL_REQUIRE(c.alpha >= 1.0, "--alpha must be >= 1, got " << c.alpha);
  resolve_precision(c.precision, torch::kCPU);  // names --precision when it is not auto, fp32 or bf16
  DL_REQUIRE(c.batch_size >= 1, "--batch_size must be >= 1, got " << c.batch_size);
  DL_REQUIRE(c.format == "h5" || c.format == "png" || c.format == "npz",
             "--format=" << c.format << ": expected h5, png or npz");
  DL_REQUIRE(c.units >= 0, "--out_shards must be >= 0 (0: one per --shard_size samples), got " << c.units);
  DL_REQUIRE(c.units <= c.num_samples, "--out_shards=" << c.units << " exceeds --num_samples=" << c.num_samples
                                                       << " (every unit needs a sample)");
  DL_REQUIRE(c.unit_size >= 1, "--shard_size must be >= 1, got " << c.unit_size);
  DL_REQUIRE(c.picture_count >= 0, "--picture_count must be >= 0, got " << c.picture_count);
  DL_REQUIRE(c.ema_decay >= 0 && c.ema_decay < 1, "--ema_decay must lie in [0, 1) (0: the run's main average), got " << c.ema_decay);
  DL_REQUIRE(c.ema || c.ema_decay == 0, "--ema_decay=" << c.ema_decay << " picks an EMA, but --ema=false asks for the raw weights");
}

// The checkpoint's tensor prefix of the weights to sample with (raw, the main EMA or one of the
// run's --ema_extra_decays), and in `what` the words for the log.
std::string weights_prefix(const std::string& dir, const proto::Manifest& man, const SampleConfig& c, std::string* what) {
  if (!c.ema) {
    *what = "raw weights";
    return "model/";
  }
  const auto& flags = man.config().flags();
  std::string main;  // the main average's decay, as ema_decay_text prints it ("" when not recorded)
  if (const auto it = flags.find("ema_decay"); it != flags.end()) {
    char* end = nullptr;
    const double d = std::strtod(it->second.c_str(), &end);
    if (end && *end == '\0' && !it->second.empty()) main = ema_decay_text(d);
  }
  if (c.ema_decay == 0 || ema_decay_text(c.ema_decay) == main) {
    *what = "EMA weights" + (main.empty() ? std::string() : " (decay " + main + ")");
    return "ema/";
  }
  std::vector<std::string> extras;  // the "ema@D/" groups the checkpoint holds
  for (const auto& name : ckpt::tensor_names(man)) {
    const auto slash = name.find('/');
    if (name.rfind("ema@", 0) != 0 || slash == std::string::npos) continue;
    const std::string prefix = name.substr(0, slash + 1);
    if (std::find(extras.begin(), extras.end(), prefix) == extras.end()) extras.push_back(prefix);
  }
  std::string held = main.empty() ? "the main one" : main + " (the main one)";
  for (const auto& p : extras) held += ", " + p.substr(4, p.size() - 5);  // "ema@D/" -> D
  const std::string wanted = ema_group_prefix(c.ema_decay);
  DL_REQUIRE(std::find(extras.begin(), extras.end(), wanted) != extras.end(),
             "--ema_decay=" << c.ema_decay << ": checkpoint " << dir << " holds the EMA weights of decay " << held
                            << "; train with --ema_extra_decays to keep other averages");
  *what = "EMA weights (decay " + ema_decay_text(c.ema_decay) + ", kept by --ema_extra_decays)";
  return wanted;
}

std::string resolve_checkpoint(const std::string& path) {
  DL_REQUIRE(!path.empty(), "--checkpoint is required (a step directory, a checkpoints folder or a run directory)");
  DL_REQUIRE(fs::exists(path), "--checkpoint: '" << path << "' does not exist");
  if (fs::exists(fs::path(path) / ckpt::kManifestName)) return path;
  for (const auto& root : {fs::path(path), fs::path(path) / "checkpoints"}) {
    auto done = ckpt::list_complete(root.string());
    if (!done.empty()) return done.back().path;
  }
  throw UserError("--checkpoint: no complete checkpoint (a step directory with manifest.pb) in '" + path + "'");
}

std::vector<int64_t> class_of_samples(const std::string& spec, int64_t num_classes, int64_t null_class, uint64_t seed,
                                      int64_t first, int64_t count, const std::vector<int64_t>& counts) {
  std::vector<int64_t> out(static_cast<size_t>(count));
  if (num_classes <= 0) {
    std::fill(out.begin(), out.end(), null_class);
    return out;
  }
  auto draw = [&](int64_t i, uint64_t n) {
    return rng::Draw(rng::Key{seed, rng::Stream::kSample, 1, static_cast<uint64_t>(first + i)}).below(n);
  };
  if (spec == "all") {
    for (int64_t i = 0; i < count; ++i) out[i] = (first + i) % num_classes;
  } else if (spec == "uniform" || (spec == "prior" && counts.empty())) {
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<int64_t>(draw(i, static_cast<uint64_t>(num_classes)));
  } else if (spec == "prior") {
    DL_REQUIRE(static_cast<int64_t>(counts.size()) == num_classes,
               "class prior of " << counts.size() << " classes for a model of " << num_classes);
    std::vector<uint64_t> cum;
    uint64_t total = 0;
    for (int64_t c : counts) cum.push_back(total += static_cast<uint64_t>(std::max<int64_t>(c, 0)));
    DL_REQUIRE(total > 0, "class prior: every class count is zero");
    for (int64_t i = 0; i < count; ++i) {  // exact inverse CDF on integer counts
      const uint64_t r = draw(i, total);
      out[i] = std::upper_bound(cum.begin(), cum.end(), r) - cum.begin();
    }
  } else {
    std::vector<int64_t> list;
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const long long c = std::strtoll(item.c_str(), &end, 10);
      DL_REQUIRE(!item.empty() && end && *end == '\0' && c >= 0 && c < num_classes,
                 "--classes: expected prior, all, uniform or class ids in [0, " << num_classes << "), got '" << spec << "'");
      list.push_back(c);
    }
    DL_REQUIRE(!list.empty(), "--classes: empty list");
    for (int64_t i = 0; i < count; ++i) out[i] = list[(first + i) % list.size()];
  }
  return out;
}

int run_sampling(const SampleConfig& cfg, comm::Communicator& comm) {
  validate(cfg);
  install_stop_handlers();
  const int rank = comm.rank(), world = comm.world_size();
  const torch::Device device = comm::select_device(cfg.device, comm::topology());

  const std::string dir = resolve_checkpoint(cfg.checkpoint);
  const auto man = ckpt::read_manifest(dir);
  const auto record = ckpt::record_maps(man);  // typed (format 2) or from the flag map (format 1)
  const auto gen_cfg = models::GeneratorConfig::from_map(record.generator);
  const auto spec = data::spec_from_map(record.dataset, "checkpoint " + dir);
  auto gen = models::make_generator(gen_cfg);
  std::vector<std::pair<std::string, torch::Tensor>> params, buffers;
  for (auto& p : gen->named_parameters()) params.emplace_back(p.key(), p.value());
  for (auto& b : gen->named_buffers()) buffers.emplace_back(b.key(), b.value());
  std::string weights;
  const std::string prefix = weights_prefix(dir, man, cfg, &weights);
  ckpt::load_weights(dir, man, params, prefix);
  ckpt::load_weights(dir, man, buffers, "model/");
  gen->to(device);
  // auto: as trained (the run record's precision), where this device computes in it.
  PrecisionChoice precision = resolve_precision(cfg.precision, device);
  if (cfg.precision == "auto") {
    const std::string trained = man.config().precision().empty() ? "fp32" : man.config().precision();
    if (trained == "fp32") precision = {Precision::kFp32, "fp32 (--precision=auto: the checkpoint was trained in fp32)"};
    else if (precision.precision == Precision::kBf16)
      precision.reason = "bf16 autocast (--precision=auto: the checkpoint was trained in bf16)";
    else precision.reason += "; the checkpoint was trained in bf16";
  }
  const std::vector<int64_t> counts(man.config().class_counts().begin(), man.config().class_counts().end());
  if (spec.num_classes > 0 && cfg.classes == "prior" && counts.empty() && rank == 0)
    LOG(WARNING) << "checkpoint " << dir << " has no class prior (written before driftlab recorded one): "
                 << "--classes=prior draws the classes uniformly";
  DL_REQUIRE(cfg.format != "png" || spec.kind == data::SampleKind::kImage,
             "--format=png needs an image model; this checkpoint's data are " << spec.describe() << " (use h5 or npz)");

  proto::SamplingJob job;
  job.set_checkpoint(dir);
  job.set_checkpoint_step(man.step());
  job.set_checkpoint_created_utc(man.created_utc());
  job.set_ema(cfg.ema);
  if (prefix.rfind("ema@", 0) == 0) job.set_ema_extra_decay(cfg.ema_decay);
  job.set_num_samples(cfg.num_samples);
  job.set_classes(spec.num_classes > 0 ? cfg.classes : "none");
  job.set_alpha(cfg.alpha);
  job.set_sample_seed(cfg.seed);
  job.set_batch_size(cfg.batch_size);
  job.set_format(cfg.format);
  job.set_units(cfg.units > 0 ? cfg.units
                              : static_cast<int>(std::min<int64_t>(cfg.num_samples, (cfg.num_samples + cfg.unit_size - 1) / cfg.unit_size)));
  for (const auto& [k, v] : data::spec_to_map(spec)) (*job.mutable_dataset())[k] = v;
  job.set_precision(precision_name(precision.precision));
  job.set_dataset_id(data::dataset_id_of(text_of(job)));
  job.set_driftlab_version(DRIFTLAB_VERSION);
  const fs::path out(cfg.out);

  // Rank 0 prepares the output; the others learn whether it worked (and fail with it if not).
  std::string state, error;
  if (rank == 0) {
    try {
      state = prepare_output(out, job, spec, cfg.force);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  const bool prepared = comm::lowest_failed_rank(comm, error.empty()) < 0;
  if (!error.empty()) throw UserError(error);
  DL_REQUIRE(prepared, "rank 0 could not prepare the output folder " << cfg.out << " (its log says why)");

  const std::vector<int> pending = pending_units(out, job);
  const bool all_done = is_complete(out, job);
  if (rank == 0)
    LOG(INFO) << "checkpoint " << dir << " (step " << man.step() << "), " << gen_cfg.arch << " generator with "
              << models::count_parameters(*gen) << " parameters, " << weights << ", device "
              << device << "; data: " << spec.describe() << "; output " << cfg.out << " (" << cfg.format << ", "
              << job.units() << " unit(s) of about " << cfg.num_samples / job.units() << " samples), "
              << (all_done ? "already complete: nothing to do"
                           : state == "resume" ? "resuming: " + std::to_string(job.units() - static_cast<int>(pending.size())) +
                                                     " unit(s) committed, " + std::to_string(pending.size()) + " to do"
                                               : "starting");
  if (rank == 0) LOG(INFO) << "precision: " << precision.reason;
  comm.barrier();  // every rank has listed the pending units before any rank writes one
  if (all_done) return 0;

  std::vector<int> mine;
  for (size_t j = static_cast<size_t>(rank); j < pending.size(); j += static_cast<size_t>(world)) mine.push_back(pending[j]);
  int64_t my_rows = 0;
  for (int k : mine) my_rows += unit_first(job, k + 1) - unit_first(job, k);
  if (spec.num_classes > 0 && !counts.empty() && cfg.classes == "prior" && rank == 0) {
    std::ostringstream p;
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    for (size_t c = 0; c < counts.size(); ++c) p << (c ? " " : "") << std::fixed << std::setprecision(3) << double(counts[c]) / total;
    LOG(INFO) << "classes drawn from the training data's class frequencies: " << p.str();
  }
  Stopwatch sw;
  ProgressBar bar("sampling (rank 0 of " + std::to_string(world) + ")", my_rows, rank == 0);
  int committed = 0;
  for (int k : mine) {
    if (stop_signal() != 0) break;
    write_unit(out, job, spec, k, *gen, counts, device, bar);
    ++committed;
  }
  bar.finish();
  const double secs = sw.seconds();
  const bool stopped = committed < static_cast<int>(mine.size());
  LOG_IF(INFO, rank == 0 || stopped) << "rank " << rank << ": " << committed << " of " << mine.size() << " unit(s) in "
                                     << secs << " s (" << bar.done() / std::max(secs, 1e-9) << " samples/s on " << device
                                     << ", one forward pass each)";
  if (stopped)
    LOG(WARNING) << "stopped by signal " << stop_signal() << " after committing " << committed << " unit(s); run again "
                 << "with the same flags to continue from the committed units";
  comm.barrier();
  if (rank == 0) {
    if (pending_units(out, job).empty()) {
      if (cfg.format == "npz") assemble_npz(out, spec, cfg.num_samples);
      if (cfg.picture_count > 0) write_picture(out, job, spec, cfg.picture_count, *gen, counts, device);
      std::printf("wrote %lld samples to %s (%s)\n", static_cast<long long>(cfg.num_samples), cfg.out.c_str(),
                  cfg.format.c_str());
    } else {
      write_stop_marker(out.string(), stop_signal());
      std::printf("%s: incomplete (stopped); run again with the same flags to continue\n", cfg.out.c_str());
    }
  }
  comm.barrier();
  return 0;
}

}  // namespace driftlab::sampler
