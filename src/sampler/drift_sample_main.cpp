// drift_sample: one-step sampling from a checkpoint directory alone. Under mpirun the ranks
// split the sample indices; rank 0 writes one data set (the training data's schema) and a picture.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "common/check.h"
#include "common/progress.h"
#include "common/timer.h"
#include "common/tool_main.h"
#include "data/writer.h"
#include "comm/communicator.h"
#include "comm/topology.h"
#include "models/generators.h"
#include "data/picture.h"
#include "models/sampling.h"
#include "ckpt/checkpoint.h"
#include "common/slice.h"

DEFINE_string(checkpoint, "", "a checkpoint step directory (RUN/checkpoints/step_N), a checkpoints folder or a run "
              "directory (then its newest complete checkpoint)");
DEFINE_int64(num_samples, 1000, "how many samples to draw");
DEFINE_string(classes, "all", "class of each sample: all (sample i gets class i mod C), uniform (random per sample), "
              "or a comma-separated list of class ids used in turn; unconditional models ignore it");
DEFINE_double(alpha, 1.0, "guidance scale alpha (1: no guidance); the model was trained for [1, --alpha_max]");
DEFINE_uint64(sample_seed, 0, "seed of the sampling noise: sample i depends only on (seed, i, class, alpha)");
DEFINE_int64(batch_size, 256, "samples per forward pass");
DEFINE_string(out, "", "output data set folder (HDF5 shards in the training data's schema); the picture goes to OUT.png");
DEFINE_int32(out_shards, 1, "number of shards of the output data set");
DEFINE_bool(force, false, "replace an existing output data set");
DEFINE_bool(ema, true, "use the EMA weights (false: the raw training weights)");
DEFINE_int32(picture_count, 64, "samples shown in the picture (2-D data: all samples)");
DEFINE_int32(sample_threads, 0, "intra-op threads per rank (0: cores / ranks on the node)");

namespace driftlab {
namespace {

namespace fs = std::filesystem;

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

std::vector<int64_t> class_of_samples(const std::string& spec, int64_t num_classes, int64_t null_class,
                                      uint64_t seed, int64_t first, int64_t count) {
  std::vector<int64_t> out(static_cast<size_t>(count));
  if (num_classes <= 0) {
    std::fill(out.begin(), out.end(), null_class);
    return out;
  }
  if (spec == "all") {
    for (int64_t i = 0; i < count; ++i) out[i] = (first + i) % num_classes;
  } else if (spec == "uniform") {
    for (int64_t i = 0; i < count; ++i)
      out[i] = static_cast<int64_t>(rng::Draw(rng::Key{seed, rng::Stream::kSample, 1, static_cast<uint64_t>(first + i)}).below(num_classes));
  } else {
    std::vector<int64_t> list;
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const long long c = std::strtoll(item.c_str(), &end, 10);
      DL_REQUIRE(!item.empty() && end && *end == '\0' && c >= 0 && c < num_classes,
                 "--classes: expected all, uniform or class ids in [0, " << num_classes << "), got '" << spec << "'");
      list.push_back(c);
    }
    DL_REQUIRE(!list.empty(), "--classes: empty list");
    for (int64_t i = 0; i < count; ++i) out[i] = list[(first + i) % list.size()];
  }
  return out;
}

int sample_main() {
  const auto& topo = comm::init_topology();
  auto comm = comm::make_communicator(topo, "mpi");
  if (FLAGS_sample_threads > 0) torch::set_num_threads(FLAGS_sample_threads);
  DL_REQUIRE(FLAGS_num_samples >= 1, "--num_samples must be >= 1, got " << FLAGS_num_samples);
  DL_REQUIRE(!FLAGS_out.empty(), "--out is required: the output data set folder");
  DL_REQUIRE(FLAGS_alpha >= 1.0, "--alpha must be >= 1, got " << FLAGS_alpha);

  const std::string dir = resolve_checkpoint(FLAGS_checkpoint);
  const auto man = ckpt::read_manifest(dir);
  std::map<std::string, std::string> flags(man.config().flags().begin(), man.config().flags().end());
  const auto gen_cfg = models::GeneratorConfig::from_map(flags);
  std::map<std::string, std::string> ds(man.config().dataset().begin(), man.config().dataset().end());
  const auto spec = data::spec_from_map(ds, "checkpoint " + dir);
  auto gen = models::make_generator(gen_cfg);
  std::vector<std::pair<std::string, torch::Tensor>> params, buffers;
  for (auto& p : gen->named_parameters()) params.emplace_back(p.key(), p.value());
  for (auto& b : gen->named_buffers()) buffers.emplace_back(b.key(), b.value());
  ckpt::load_weights(dir, man, params, FLAGS_ema ? "ema/" : "model/");
  ckpt::load_weights(dir, man, buffers, "model/");
  LOG(INFO) << "checkpoint " << dir << " (step " << man.step() << "), " << gen_cfg.arch << " generator with "
            << models::count_parameters(*gen) << " parameters, " << (FLAGS_ema ? "EMA" : "raw") << " weights; data: "
            << spec.describe();

  // Ranks split whole global batches (batch j = samples [j B, (j+1) B)), so every sample is
  // computed in a batch of the same composition whatever the number of ranks: the output is
  // bit-for-bit identical for 1 and W ranks, not only up to float reduction order.
  DL_REQUIRE(FLAGS_batch_size >= 1, "--batch_size must be >= 1, got " << FLAGS_batch_size);
  const int64_t num_batches = (FLAGS_num_samples + FLAGS_batch_size - 1) / FLAGS_batch_size;
  const auto [bb, be] = rank_slice(num_batches, comm->rank(), comm->world_size());
  const int64_t b = std::min(bb * FLAGS_batch_size, FLAGS_num_samples), e = std::min(be * FLAGS_batch_size, FLAGS_num_samples);
  const auto classes = class_of_samples(FLAGS_classes, gen_cfg.num_classes, gen->null_class(), FLAGS_sample_seed, b, e - b);
  auto labels = torch::tensor(classes, torch::kLong);
  auto alpha = torch::full({e - b}, FLAGS_alpha);
  Stopwatch sw;
  ProgressBar bar("sampling", e - b, comm->rank() == 0);
  std::vector<torch::Tensor> parts;
  for (int64_t at = 0; at < e - b; at += FLAGS_batch_size) {
    const int64_t rows = std::min(FLAGS_batch_size, e - b - at);
    parts.push_back(models::generate(*gen, FLAGS_sample_seed, rng::Stream::kSample, 0, b + at,
                                      labels.slice(0, at, at + rows), alpha.slice(0, at, at + rows), FLAGS_batch_size));
    bar.add(rows);
  }
  bar.finish();
  std::vector<int64_t> empty_shape{0};  // a rank without a batch still sends a [0, sample...] tensor
  for (int64_t d : spec.decoded_shape()) empty_shape.push_back(d);
  auto local = parts.empty() ? torch::empty(empty_shape) : torch::cat(parts);
  const double local_secs = sw.seconds();
  auto samples = comm->all_gather_varying(local.contiguous());
  auto all_labels = comm->all_gather_varying(labels);
  if (comm->rank() == 0) {
    LOG(INFO) << FLAGS_num_samples << " samples in " << local_secs << " s on rank 0 ("
              << (e - b) / std::max(local_secs, 1e-9) << " samples/s per rank, one forward pass each)";
    data::WriteOptions wo;
    wo.num_shards = FLAGS_out_shards;
    wo.force = FLAGS_force;
    wo.show_progress = false;
    const bool labelled = spec.num_classes > 0;
    data::DatasetWriter w(FLAGS_out, spec, FLAGS_num_samples, wo);
    w.append_decoded(samples, labelled ? all_labels : torch::Tensor());
    w.finish();
    const int64_t shown = spec.decoded_shape().size() == 3 ? std::min<int64_t>(FLAGS_picture_count, FLAGS_num_samples)
                                                            : FLAGS_num_samples;
    const std::string png = FLAGS_out + ".png";
    write_png(png, data::picture(spec, samples.slice(0, 0, shown), torch::Tensor(),
                                    spec.num_classes > 0 && FLAGS_classes == "all" ? static_cast<int>(std::min<int64_t>(spec.num_classes, shown)) : 0));
    std::printf("wrote %lld samples to %s and a picture to %s (%.1f samples/s)\n", static_cast<long long>(FLAGS_num_samples),
                FLAGS_out.c_str(), png.c_str(), FLAGS_num_samples / std::max(sw.seconds(), 1e-9));
  }
  comm->barrier();
  return 0;
}

}  // namespace
}  // namespace driftlab

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_sample: draw samples from a trained generator with ONE forward pass each.\n"
      "Usage:\n"
      "  drift_sample --checkpoint=runs/toy2d --num_samples=5000 --out=runs/toy2d/samples\n"
      "  mpirun -np 3 drift_sample --checkpoint=runs/mnist/checkpoints/step_00004000 --alpha=2 --out=out/mnist_a2\n"
      "Needs only the checkpoint (the model and the data schema are read from its manifest). Sample i depends\n"
      "only on (--sample_seed, i, its class, --alpha): the output is the same for any number of ranks.",
      [] { return driftlab::sample_main(); });
}
