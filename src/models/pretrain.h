// drift_encoder's work, typed: MAE pretraining of the ResNet encoder on an image data set (shard
// format) or an IDX image file, and the description of an encoder file. The tool parses its flags
// into these configs in drift_encoder_main.cpp; nothing here reads flags.
//
//   models::EncoderPretrainConfig c;
//   c.data = "data/mnist";
//   c.mae.steps = 2000;
//   c.out = "mnist_enc.pt";
//   models::pretrain_encoder(c);   // validates, trains, prints the report, writes c.out
//
// Built as its own library (driftlab_pretrain) because it reads data sets: driftlab_models itself
// does not depend on src/data. Not here: the MAE objective and loop (mae.h), the encoders
// (encoders.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/mae.h"

namespace driftlab::models {

struct EncoderPretrainConfig {
  std::string data;            // an image data set in the shard format; exactly one of data and images
  std::string images;          // an IDX uint8 image file (decoded to [-1, 1])
  std::string labels;          // IDX labels matching `images` (enables fine-tuning); empty: none
  int64_t max_images = 0;      // use only the first N images; 0: all
  int64_t holdout = 1000;      // the last N images are held out (capped at half); 0: none
  std::string out = "encoder.pt";  // the encoder file written
  int64_t batch_size = 64;     // images per step
  std::vector<int64_t> widths{16, 32, 64};  // encoder channels per stage
  std::vector<int64_t> blocks{2, 2, 2};     // basic blocks per stage
  int64_t groups = 8;          // GroupNorm groups
  // Steps, learning rates, EMA, masks, decoder width, seed (also the initialisation's and the image
  // choice's), logging, fine-tuning. num_classes, device and eval_images are set by the work.
  MaeOptions mae;
  std::string device = "cpu";  // cpu or cuda[:N]
  std::string precision = "auto";  // auto | fp32 | bf16 (common/precision.h)
  int threads = 0;             // LibTorch intra-op threads, set by the tool before the work; 0: all cores
};

struct EncoderInfoConfig {
  std::string path;  // an encoder file (drift_encoder output or a TorchScript module)
  int threads = 0;   // as above
};

// UserError naming the flag (--data / --images, --batch_size, --device, --max_images, --holdout,
// --threads and the MAE flags) and the bad value.
void validate(const EncoderPretrainConfig& config);

// Validates, reads the images, pretrains (and fine-tunes when asked), prints the losses and the
// held-out figures, writes config.out. Returns the exit code (0).
int pretrain_encoder(const EncoderPretrainConfig& config);

// Prints what an encoder file holds (kind, parameters, feature maps of a 28x28 input).
int describe_encoder_file(const EncoderInfoConfig& config);

}  // namespace driftlab::models
