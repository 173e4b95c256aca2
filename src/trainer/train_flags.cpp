// drift_train's flags and their parsing into a TrainConfig: the only code of the trainer that
// reads flags. Compiled into drift_train (and the trainer tests), not into a library.
#include "trainer/train_flags.h"

#include <gflags/gflags.h>

#include "common/tool_main.h"  // project_flag_values: the run record

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
DEFINE_int64(lr_decay_steps, 0, "--lr_decay spans only the last this many steps before --steps (constant --lr until "
             "then); 0: the decay starts at the end of --warmup_steps");
DEFINE_double(beta1, 0.9, "AdamW beta1");
DEFINE_double(beta2, 0.95, "AdamW beta2");
DEFINE_double(weight_decay, 0.0, "AdamW decoupled weight decay");
DEFINE_double(grad_clip, 2.0, "clip the global gradient norm to this (0: off)");
DEFINE_double(ema_decay, 0.999, "EMA decay of the weights (the sampler uses the EMA weights by default)");
DEFINE_string(ema_extra_decays, "", "further EMA decays, comma separated (e.g. 0.99,0.98): each average is kept beside the "
              "main one (--ema_decay) and checkpointed, so one run can be sampled with several (drift_sample --ema_decay=D); "
              "one more copy of the generator's weights each, updated every step");
DEFINE_double(alpha_max, 4.0, "guidance: alpha is drawn in [1, alpha_max] per class");
DEFINE_double(alpha_power, 3.0, "guidance: alpha density proportional to alpha^-alpha_power");
DEFINE_double(alpha_one_frac, 0.0, "guidance: share of classes trained with alpha = 1");
DEFINE_string(taus, driftlab::drift::kDefaultTaus, "drift kernel temperatures, comma separated");
DEFINE_int64(tau_warmup_steps, 0, "temperature warm-up: the first this many steps use the taus times --tau_warmup_scale "
             "(broad kernels first, so far-apart modes of unlabelled data reach the generated samples before the paper's "
             "temperatures take over); 0: off");
DEFINE_double(tau_warmup_scale, 10.0, "temperature warm-up: the factor on the taus during the warm-up (>= 1)");
DEFINE_bool(tau_warmup_reset, true, "temperature warm-up: AdamW's moment estimates restart from zero when the warm-up "
            "ends (the broad kernels' gradients are several times larger; with beta2 0.999 their second moments would "
            "shrink the steps for thousands of steps after it)");
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
DEFINE_bool(allow_objective_change, false, "resume even when objective settings (the fields of the run record's objective: --taus, "
            "--drift_floor, --keys_*, per-class set sizes, --num_classes_per_step, --alpha_*, --tau_warmup_*) differ from the "
            "checkpoint's (each change warned); the model must still match");
DEFINE_int32(threads, 0, "intra-op threads per rank (0: $DRIFTLAB_THREADS, else cores / ranks on the node)");
DEFINE_string(precision, "auto", "arithmetic of the generator's and encoder's forward and backward passes: auto (bf16 "
              "where the hardware computes in it: CPUs with AVX512-BF16 or AMX-BF16, GPUs of compute capability 8.0 or "
              "newer; else fp32), fp32, or bf16 (autocast; the drift field, its temperatures' softmaxes, the feature "
              "keys' statistics, the loss, weights, optimizer state, EMA and checkpoints stay fp32)");
DEFINE_string(backend, "auto", "communicator: auto (NCCL when every rank of the node has its own GPU, else MPI), mpi or nccl");
DEFINE_string(device, "auto", "where the networks and the step compute: auto (the communicator's device: this rank's "
              "GPU with --backend=nccl, else the CPU), cpu, cuda (this rank's GPU: local rank modulo the visible GPUs) "
              "or cuda:N. With --backend=mpi on a GPU the collectives copy through host memory: the way to run several "
              "ranks on one GPU, which NCCL refuses");
DEFINE_int32(picture_classes, 10, "pictures: classes shown (8 samples each) for class-conditional image data");
DEFINE_double(picture_alpha, 1.0, "pictures: guidance scale of the samples drawn");
DEFINE_int64(prefetch, 2, "steps of real data prepared ahead by a background thread (0: none)");
DEFINE_int64(test_pause_in_checkpoint_ms, 0, "testing only: sleep this long after the shards and before the manifest");
DEFINE_double(collective_timeout, 600,
              "deadline in seconds of every collective and every wait on another rank (0: none); when one expires "
              "the job ends with one line naming the collective, the step and the ranks that did not arrive "
              "(from heartbeat records in --run_dir/watchdog). Must exceed the longest time one rank works alone "
              "while the others wait (a checkpoint write, a picture on rank 0)");
DEFINE_int64(check_sync_every, 0,
             "Every this many steps, check that all ranks hold bit-identical parameters and buffers "
             "(one 64-bit hash per tensor, compared across ranks); 0 disables the check");

// The generator (--gen_*) and the feature encoder (--encoder, --enc_*).
DEFINE_string(gen_arch, "mlp", "generator architecture: mlp (vectors, 2-D toys), conv (small images), "
                               "dit (the paper's transformer; implied by --gen_preset)");
DEFINE_string(gen_preset, "", "dit size preset: tiny, S/2, B/2 (~131M params on 4x32x32, 1000 classes), "
                              "L/2 (~459M), B/4, B/16, L/16; explicit --gen_* flags override it");
DEFINE_string(gen_sample_shape, "", "shape of one sample, D or C,H,W (default: the data set's)");
DEFINE_int64(gen_num_classes, -1, "number of classes; id num_classes means unconditional (default: the data set's)");
DEFINE_int64(gen_noise_dim, 32, "mlp/conv: length of the input noise vector (dit: noise has the sample shape)");
DEFINE_int64(gen_noise_categories, 0, "mlp: a discrete part of the noise, one uniform index in [0, K) per sample "
                                      "through a learned embedding, so the map need not be continuous across "
                                      "separated modes (0: Gaussian noise only)");
DEFINE_int64(gen_width, 256, "mlp hidden width / conv base channels / dit hidden size");
DEFINE_int64(gen_depth, 3, "mlp hidden layers / dit transformer blocks");
DEFINE_int64(gen_cond_dim, 64, "mlp/conv: size of the class + alpha embedding");
DEFINE_int64(gen_heads, 4, "dit attention heads (head size must be divisible by 4 for 2-D RoPE)");
DEFINE_int64(gen_patch, 2, "dit patch size (must divide H and W)");
DEFINE_double(gen_mlp_ratio, 4.0, "dit: SwiGLU hidden size = int(2/3 * ratio * width)");
DEFINE_int64(gen_context_tokens, 16, "dit: in-context conditioning tokens prepended to the patches");
DEFINE_int64(gen_style_tokens, 32, "dit: random style tokens per sample (0: none)");
DEFINE_int64(gen_style_codebook, 64, "dit: learnable embeddings in each style token's codebook");
DEFINE_int64(gen_init_seed, 0, "seed of the generator's parameter initialisation");
DEFINE_string(encoder, "identity", "feature encoder: identity (raw samples; vectors, toys), resnet (random-init "
                                   "ResNet sized by --enc_*), or a file: a drift_encoder pretrain output or a "
                                   "TorchScript module returning a list of [B,C,H,W] feature maps");
DEFINE_string(enc_widths, "16,32,64", "resnet encoder: channels per stage");
DEFINE_string(enc_blocks, "2,2,2", "resnet encoder: basic blocks per stage");
DEFINE_int64(enc_groups, 8, "resnet encoder: GroupNorm groups");
DEFINE_int64(enc_in_channels, 0, "resnet encoder: input channels (0: the data set's)");
DEFINE_int64(enc_init_seed, 0, "resnet encoder: seed of the random initialisation (--encoder=resnet)");

namespace driftlab {
namespace {

bool given(const char* name) {
  gflags::CommandLineFlagInfo info;
  return gflags::GetCommandLineFlagInfo(name, &info) && !info.is_default;
}

// Only flags set on the command line (or in a flagfile) go in, so a preset is not overwritten by
// the defaults of the flags it fills; sample shape and classes come from the data set unless given.
models::FlagMap generator_request() {
  models::FlagMap m;
  if (given("gen_sample_shape")) m["gen_sample_shape"] = FLAGS_gen_sample_shape;
  if (given("gen_num_classes")) m["gen_num_classes"] = std::to_string(FLAGS_gen_num_classes);
  if (!FLAGS_gen_preset.empty()) m["gen_preset"] = FLAGS_gen_preset;
  if (given("gen_arch") || FLAGS_gen_preset.empty()) m["gen_arch"] = FLAGS_gen_arch;
  DL_REQUIRE(FLAGS_gen_preset.empty() || !given("gen_arch") || FLAGS_gen_arch == "dit",
             "--gen_preset=" << FLAGS_gen_preset << " is a dit preset but --gen_arch=" << FLAGS_gen_arch);
  auto put = [&](const char* name, const std::string& value) {
    if (given(name)) m[name] = value;
  };
  // Size flags of the small generators keep their flag defaults when no preset is used.
  auto put_or_default = [&](const char* name, const std::string& value) {
    if (given(name) || FLAGS_gen_preset.empty()) m[name] = value;
  };
  put_or_default("gen_width", std::to_string(FLAGS_gen_width));
  put_or_default("gen_depth", std::to_string(FLAGS_gen_depth));
  put_or_default("gen_heads", std::to_string(FLAGS_gen_heads));
  put_or_default("gen_patch", std::to_string(FLAGS_gen_patch));
  m["gen_noise_dim"] = std::to_string(FLAGS_gen_noise_dim);
  m["gen_noise_categories"] = std::to_string(FLAGS_gen_noise_categories);
  m["gen_cond_dim"] = std::to_string(FLAGS_gen_cond_dim);
  m["gen_context_tokens"] = std::to_string(FLAGS_gen_context_tokens);
  m["gen_style_tokens"] = std::to_string(FLAGS_gen_style_tokens);
  m["gen_style_codebook"] = std::to_string(FLAGS_gen_style_codebook);
  m["gen_init_seed"] = std::to_string(FLAGS_gen_init_seed);
  put("gen_mlp_ratio", std::to_string(FLAGS_gen_mlp_ratio));
  return m;
}

}  // namespace

TrainConfig train_config_from_flags() {
  TrainConfig c;
  c.data = FLAGS_data;
  c.steps = FLAGS_steps;
  c.seed = FLAGS_seed;
  c.generator = generator_request();
  c.encoder.encoder = FLAGS_encoder;
  c.encoder.widths = FLAGS_enc_widths;
  c.encoder.blocks = FLAGS_enc_blocks;
  c.encoder.groups = FLAGS_enc_groups;
  c.encoder.in_channels = FLAGS_enc_in_channels;
  c.encoder.init_seed = FLAGS_enc_init_seed;

  c.batch.classes_per_step = FLAGS_num_classes_per_step;
  c.batch.gen_per_class = FLAGS_gen_per_class;
  c.batch.pos_per_class = FLAGS_pos_per_class;
  c.batch.unc_per_class = FLAGS_unc_per_class;
  c.batch.guidance.alpha_max = FLAGS_alpha_max;
  c.batch.guidance.alpha_power = FLAGS_alpha_power;
  c.batch.guidance.alpha_one_frac = FLAGS_alpha_one_frac;

  c.objective.taus = drift::parse_taus(FLAGS_taus);
  c.objective.floor = FLAGS_drift_floor;
  c.objective.path = drift::parse_path(FLAGS_drift_path);
  c.objective.keys_per_location = FLAGS_keys_per_location;
  c.objective.keys_patch = FLAGS_keys_patch;
  c.objective.tau_warmup_steps = FLAGS_tau_warmup_steps;
  c.objective.tau_warmup_scale = FLAGS_tau_warmup_scale;
  c.objective.tau_warmup_reset = FLAGS_tau_warmup_reset;

  c.optim.schedule = LrSchedule{FLAGS_lr, FLAGS_warmup_steps, FLAGS_lr_decay, FLAGS_steps, FLAGS_lr_min_frac,
                                FLAGS_lr_decay_steps};
  c.optim.adam.beta1 = FLAGS_beta1;
  c.optim.adam.beta2 = FLAGS_beta2;
  c.optim.adam.weight_decay = FLAGS_weight_decay;
  c.optim.grad_clip = FLAGS_grad_clip;
  c.optim.ema_decay = FLAGS_ema_decay;
  c.optim.ema_extra_decays = parse_ema_decays(FLAGS_ema_extra_decays, FLAGS_ema_decay);

  c.checkpoint.every = FLAGS_ckpt_every;
  c.checkpoint.keep_last = FLAGS_keep_last;
  c.checkpoint.keep_every = FLAGS_keep_every;
  c.checkpoint.resume = FLAGS_resume;
  c.checkpoint.allow_objective_change = FLAGS_allow_objective_change;
  c.checkpoint.test_pause_ms = FLAGS_test_pause_in_checkpoint_ms;

  c.output.run_dir = FLAGS_run_dir;
  c.output.log_every = FLAGS_log_every;
  c.output.image_every = FLAGS_image_every;
  c.output.picture_classes = FLAGS_picture_classes;
  c.output.picture_alpha = FLAGS_picture_alpha;

  c.runtime.threads = FLAGS_threads;
  c.runtime.backend = FLAGS_backend;
  c.runtime.device = FLAGS_device;
  c.runtime.precision = FLAGS_precision;
  c.runtime.prefetch = FLAGS_prefetch;
  c.runtime.check_sync_every = FLAGS_check_sync_every;
  c.runtime.collective_timeout = FLAGS_collective_timeout;

  c.record = project_flag_values();
  return c;
}

}  // namespace driftlab
