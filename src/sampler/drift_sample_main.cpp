// drift_sample: one-step sampling from a checkpoint directory alone, as an offline job: ranks
// compute and write whole units of the output (no gathering), committed units survive a kill, and
// the same command continues an interrupted job. The work itself is sampler/sampling.h; this file
// only turns the flags into a SampleConfig.
#include <gflags/gflags.h>
#include <torch/torch.h>

#include "comm/communicator.h"
#include "comm/topology.h"
#include "common/tool_main.h"
#include "sampler/sampling.h"

DEFINE_string(checkpoint, "", "a checkpoint step directory (RUN/checkpoints/step_N), a checkpoints folder or a run "
              "directory (then its newest complete checkpoint)");
DEFINE_int64(num_samples, 1000, "how many samples to draw");
DEFINE_string(classes, "prior", "class of each sample: prior (drawn from the training data's class frequencies, "
              "recorded in the checkpoint; uniform for checkpoints that lack them), all (sample i gets class i mod C), "
              "uniform (random per sample), or a comma-separated list of class ids used in turn; unconditional models "
              "ignore it");
DEFINE_double(alpha, 1.0, "guidance scale alpha (1: no guidance); the model was trained for [1, --alpha_max]");
DEFINE_uint64(sample_seed, 0, "seed of the sampling noise: sample i depends only on (seed, i, class, alpha)");
DEFINE_int64(batch_size, 256, "samples per forward pass");
DEFINE_string(out, "", "output folder: HDF5 shards in the training data's schema (--format=h5), one PNG per sample in "
              "one subfolder per class (png), or OUT/samples.npz (npz); the job record is OUT/sampling.pbtxt and a "
              "picture of the first samples goes to OUT.png");
DEFINE_string(format, "h5", "output format: h5 (the project's shard format), png (for clean-fid, torch-fidelity, "
              "pytorch-fid) or npz (arr_0 uint8 [N, H, W, C] plus labels, for the guided-diffusion evaluation suite)");
DEFINE_int32(out_shards, 0, "units of work K (h5: the output's shards): unit k holds samples [k N / K, (k+1) N / K) and "
             "is committed atomically; 0: one unit per --shard_size samples");
DEFINE_int64(shard_size, 1024, "samples per unit when --out_shards=0 (small units balance the ranks and lose little work to a kill)");
DEFINE_bool(force, false, "replace an existing output that was made with other settings (the same settings resume it)");
DEFINE_bool(ema, true, "use the EMA weights (false: the raw training weights)");
DEFINE_double(ema_decay, 0, "which EMA of the weights: 0 the run's main one (drift_train --ema_decay), or the decay of "
              "one it kept besides (drift_train --ema_extra_decays); part of the job's identity");
DEFINE_int32(picture_count, 64, "images shown in OUT.png (2-D data: up to 50000 points; 0: no picture)");
DEFINE_int32(sample_threads, 0, "intra-op threads per rank (0: cores / ranks on the node)");
DEFINE_string(device, "auto", "where the generator runs: auto (the rank's local GPU when this build has CUDA and one is "
              "visible, else the CPU), cpu, cuda (the local GPU: local rank mod the visible devices) or cuda:N");
DEFINE_string(precision, "auto", "the generator's arithmetic: auto (the precision the checkpoint was trained in, where "
              "this device computes in it; else fp32), fp32, or bf16 (autocast; the output layer stays fp32). Part of "
              "the job's identity: an output made in another precision is not resumed");

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_sample: draw samples from a trained generator with ONE forward pass each.\n"
      "Usage:\n"
      "  drift_sample --checkpoint=runs/toy2d --num_samples=5000 --out=runs/toy2d/samples\n"
      "  mpirun -np 3 drift_sample --checkpoint=runs/mnist --alpha=1.5 --num_samples=50000 --format=png --out=out/mnist\n"
      "Needs only the checkpoint (the model, the data schema and the class prior are read from its manifest).\n"
      "Sample i depends only on (--sample_seed, i, its class, --alpha): the output is the same for any number of\n"
      "ranks. An interrupted job (kill, SIGTERM, SIGUSR1) continues when run again with the same flags.",
      [] {
        using namespace driftlab;
        const auto& topo = comm::init_topology();
        auto comm = comm::make_communicator(topo, "mpi");  // collectives here are tiny: CPU MPI suffices
        if (FLAGS_sample_threads > 0) torch::set_num_threads(FLAGS_sample_threads);
        sampler::SampleConfig c;
        c.checkpoint = FLAGS_checkpoint;
        c.num_samples = FLAGS_num_samples;
        c.classes = FLAGS_classes;
        c.alpha = FLAGS_alpha;
        c.seed = FLAGS_sample_seed;
        c.batch_size = FLAGS_batch_size;
        c.out = FLAGS_out;
        c.format = FLAGS_format;
        c.units = FLAGS_out_shards;
        c.unit_size = FLAGS_shard_size;
        c.force = FLAGS_force;
        c.ema = FLAGS_ema;
        c.ema_decay = FLAGS_ema_decay;
        c.picture_count = FLAGS_picture_count;
        c.device = FLAGS_device;
        c.precision = FLAGS_precision;
        return sampler::run_sampling(c, *comm);
      });
}
